//! The text format TensorRT calibrators read and write (`cal.bin`, `int8-calib-file`):
//!
//! ```text
//! TRT-<version digits>-<Algorithm>
//! <tensor name>: <float32 scale as lowercase hex bits, no 0x, no padding>
//! ```
//!
//! Scale = amax / 127. Names may contain `:` (ONNX names such as `softargmax:1`), so a line splits at
//! its last `": "`. Any version and algorithm is read; TensorRT itself rejects a foreign version line,
//! which is why users hand-edit them — we do not.

use std::collections::HashSet;
use std::fmt;

use tao_graph::ir::Graph;

/// Version digits written into caches this project makes (TensorRT 8.6.1's format, the last line of
/// TensorRT releases that read UFF models).
pub const DEFAULT_VERSION: &str = "8601";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Entropy2,
    Entropy,
    MinMax,
    /// Not a TensorRT calibrator name; written by this project for percentile calibration.
    Percentile,
}

impl Algorithm {
    pub fn cache_name(self) -> &'static str {
        match self {
            Algorithm::Entropy2 => "EntropyCalibration2",
            Algorithm::Entropy => "EntropyCalibration",
            Algorithm::MinMax => "MinMaxCalibration",
            Algorithm::Percentile => "PercentileCalibration",
        }
    }

    fn from_cache_name(name: &str) -> Option<Algorithm> {
        [
            Algorithm::Entropy2,
            Algorithm::Entropy,
            Algorithm::MinMax,
            Algorithm::Percentile,
        ]
        .into_iter()
        .find(|a| a.cache_name() == name)
    }
}

/// A calibration table: per-tensor scales in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationCache {
    /// The version digits of the first line (e.g. `7000`, `8001`, `101401`).
    pub version: String,
    pub algorithm: Algorithm,
    pub scales: Vec<(String, f32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheParseError {
    #[error("calibration cache is empty")]
    Empty,
    #[error(
        "line 1: `{0}` is not a TensorRT calibration header (expected TRT-<version>-<algorithm>)"
    )]
    BadHeader(String),
    #[error("line {line}: unknown calibration algorithm `{name}`")]
    UnknownAlgorithm { line: usize, name: String },
    #[error("line {line}: `{text}` has no `: ` between tensor name and scale")]
    MissingColon { line: usize, text: String },
    #[error(
        "line {line}: scale `{value}` of tensor `{name}` is not a hexadecimal float32 bit pattern"
    )]
    BadHex {
        line: usize,
        name: String,
        value: String,
    },
    #[error("line {line}: tensor `{name}` has a negative, infinite or NaN scale")]
    BadScale { line: usize, name: String },
    #[error("line {line}: tensor `{name}` appears twice (first on line {first})")]
    Duplicate {
        line: usize,
        name: String,
        first: usize,
    },
}

impl CalibrationCache {
    pub fn parse(text: &str) -> Result<CalibrationCache, CacheParseError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
        let (_, header) = lines
            .by_ref()
            .find(|(_, l)| !l.trim().is_empty())
            .ok_or(CacheParseError::Empty)?;
        let rest = header
            .strip_prefix("TRT-")
            .ok_or_else(|| CacheParseError::BadHeader(header.to_owned()))?;
        let (version, algorithm) = rest
            .split_once('-')
            .ok_or_else(|| CacheParseError::BadHeader(header.to_owned()))?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CacheParseError::BadHeader(header.to_owned()));
        }
        let algorithm = Algorithm::from_cache_name(algorithm).ok_or_else(|| {
            CacheParseError::UnknownAlgorithm {
                line: 1,
                name: algorithm.to_owned(),
            }
        })?;
        let mut scales = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for (line, text) in lines {
            if text.trim().is_empty() {
                continue;
            }
            let (name, value) =
                text.rsplit_once(": ")
                    .ok_or_else(|| CacheParseError::MissingColon {
                        line,
                        text: text.to_owned(),
                    })?;
            let bad_hex = || CacheParseError::BadHex {
                line,
                name: name.to_owned(),
                value: value.to_owned(),
            };
            let value = value.trim();
            if value.is_empty() || value.len() > 8 {
                return Err(bad_hex());
            }
            let bits = u32::from_str_radix(value, 16).map_err(|_| bad_hex())?;
            let scale = f32::from_bits(bits);
            if !scale.is_finite() || scale < 0.0 {
                return Err(CacheParseError::BadScale {
                    line,
                    name: name.to_owned(),
                });
            }
            if let Some(&first) = seen.get(name) {
                return Err(CacheParseError::Duplicate {
                    line,
                    name: name.to_owned(),
                    first,
                });
            }
            seen.insert(name.to_owned(), line);
            scales.push((name.to_owned(), scale));
        }
        Ok(CalibrationCache {
            version: version.to_owned(),
            algorithm,
            scales,
        })
    }

    /// amax (largest magnitude represented) of a tensor: scale × 127.
    pub fn amax(&self, name: &str) -> Option<f32> {
        self.scales
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s * 127.0)
    }

    /// Places the cache's names on the graph's tensors: exact names first, then the usual spelling
    /// differences between frameworks (a `:0` output suffix present on one side only).
    pub fn map_to_graph(&self, graph: &Graph) -> Mapping {
        let mut mapped = Vec::new();
        let mut unmapped = Vec::new();
        for (name, _) in &self.scales {
            let candidates = [
                Some(name.clone()),
                name.strip_suffix(":0").map(str::to_owned),
                Some(format!("{name}:0")),
            ];
            match candidates
                .into_iter()
                .flatten()
                .find(|c| graph.has_tensor(c))
            {
                Some(tensor) => mapped.push((name.clone(), tensor)),
                None => unmapped.push(name.clone()),
            }
        }
        Mapping { mapped, unmapped }
    }
}

impl fmt::Display for CalibrationCache {
    /// The cache file's text: header, then one line per tensor, each ending in `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "TRT-{}-{}", self.version, self.algorithm.cache_name())?;
        for (name, scale) in &self.scales {
            writeln!(f, "{name}: {:x}", scale.to_bits())?;
        }
        Ok(())
    }
}

/// Which cache entries name tensors of the graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// (name in the cache, tensor in the graph)
    pub mapped: Vec<(String, String)>,
    pub unmapped: Vec<String>,
}

impl Mapping {
    pub fn mapped_tensors(&self) -> HashSet<&str> {
        self.mapped.iter().map(|(_, t)| t.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_back_identically() {
        let text = "TRT-8001-EntropyCalibration2\ninput_face_images: 4000965d\nsoftargmax:1: 3c010a14\nzero: 0\n";
        let cache = CalibrationCache::parse(text).unwrap();
        assert_eq!(cache.version, "8001");
        assert_eq!(cache.algorithm, Algorithm::Entropy2);
        assert_eq!(cache.scales[1].0, "softargmax:1");
        assert_eq!(cache.scales[2].1, 0.0);
        assert_eq!(cache.to_string(), text);
        assert!(
            (cache.amax("input_face_images").unwrap() - f32::from_bits(0x4000965d) * 127.0).abs()
                < 1e-3
        );
    }

    #[test]
    fn malformed_caches_say_what_and_where() {
        type Check = fn(&CacheParseError) -> bool;
        let cases: [(&str, Check); 7] = [
            ("", |e| *e == CacheParseError::Empty),
            ("\n\n", |e| *e == CacheParseError::Empty),
            ("TensorRT cache\n", |e| {
                matches!(e, CacheParseError::BadHeader(_))
            }),
            ("TRT-8001-Magic\n", |e| {
                matches!(e, CacheParseError::UnknownAlgorithm { .. })
            }),
            ("TRT-7000-EntropyCalibration2\nname 3c010a14\n", |e| {
                matches!(e, CacheParseError::MissingColon { line: 2, .. })
            }),
            ("TRT-7000-EntropyCalibration2\nname: 3cz10a14\n", |e| {
                matches!(e, CacheParseError::BadHex { line: 2, .. })
            }),
            ("TRT-7000-EntropyCalibration2\na: 1\nb: 2\na: 3\n", |e| {
                matches!(
                    e,
                    CacheParseError::Duplicate {
                        line: 4,
                        first: 2,
                        ..
                    }
                )
            }),
        ];
        for (text, check) in cases {
            let err = CalibrationCache::parse(text).unwrap_err();
            assert!(check(&err), "{text:?}: {err}");
        }
        let err = CalibrationCache::parse("TRT-7000-MinMaxCalibration\nx: 7fc00000\n").unwrap_err();
        assert!(
            matches!(err, CacheParseError::BadScale { .. }),
            "NaN scale: {err}"
        );
        let err =
            CalibrationCache::parse("TRT-7000-MinMaxCalibration\nx: 123456789\n").unwrap_err();
        assert!(
            matches!(err, CacheParseError::BadHex { .. }),
            "more than 32 bits: {err}"
        );
    }
}
