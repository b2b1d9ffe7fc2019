//! The plan file: a self-describing, checksummed container of what a backend chose.
//!
//! Layout (little-endian):
//! ```text
//! 0   8   magic "TAOPLAN\0"
//! 8   4   format version
//! 12  4   number of header entries, then each: key (u32 length + UTF-8), value (u32 length + UTF-8)
//! ..  4   number of sections, then each: name (u32 length + UTF-8), offset u64, length u64
//! ..      section bytes, each starting at a multiple of 64 from the file start
//! end-4 4 CRC-32 of every byte before it
//! ```
//! Header entries carry the identity checked on load (producer, backend, device, model and options
//! hashes) and free-form descriptions for `taoctl cache list`. Sections carry the optimised graph and
//! the backend's weights; 64-byte alignment lets them be used in place.

use std::collections::BTreeMap;

use crate::aligned::{ALIGN, AlignedBytes};

pub const MAGIC: [u8; 8] = *b"TAOPLAN\0";
/// Bumped whenever the layout or the meaning of a section changes; older plans are rebuilt.
pub const FORMAT_VERSION: u32 = 1;
/// Version of the software that writes plans.
pub const PRODUCER: &str = concat!("tao-infer ", env!("CARGO_PKG_VERSION"));

/// Header keys every plan has.
pub mod keys {
    pub const PRODUCER: &str = "producer";
    pub const BACKEND: &str = "backend";
    pub const DEVICE: &str = "device";
    pub const MODEL_SHA256: &str = "model-sha256";
    pub const OPTIONS_SHA256: &str = "options-sha256";
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("not a plan file (no TAOPLAN magic)")]
    NotAPlan,
    #[error("plan format version {found}, this build reads version {supported}")]
    FormatVersion { found: u32, supported: u32 },
    #[error("plan is truncated: {0}")]
    Truncated(String),
    #[error("plan is corrupt: checksum {found:08x} does not match {computed:08x}")]
    Corrupt { found: u32, computed: u32 },
    #[error("plan is malformed: {0}")]
    Malformed(String),
    #[error("plan has no section `{0}`")]
    MissingSection(String),
}

/// A plan being assembled by a backend.
#[derive(Default, Debug, Clone)]
pub struct PlanBuilder {
    header: BTreeMap<String, String>,
    sections: Vec<(String, Vec<u8>)>,
}

impl PlanBuilder {
    pub fn new() -> PlanBuilder {
        let mut b = PlanBuilder::default();
        b.header.insert(keys::PRODUCER.into(), PRODUCER.into());
        b
    }

    pub fn header(mut self, key: &str, value: impl Into<String>) -> PlanBuilder {
        self.header.insert(key.to_owned(), value.into());
        self
    }

    pub fn section(mut self, name: &str, bytes: Vec<u8>) -> PlanBuilder {
        self.sections.push((name.to_owned(), bytes));
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        put_u32(&mut out, self.header.len());
        for (k, v) in &self.header {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        put_u32(&mut out, self.sections.len());
        // The table's size is known before the offsets: names plus two u64 per entry.
        let table_len: usize = self.sections.iter().map(|(n, _)| 4 + n.len() + 16).sum();
        let mut offset = (out.len() + table_len).next_multiple_of(ALIGN);
        let mut offsets = Vec::with_capacity(self.sections.len());
        for (name, bytes) in &self.sections {
            put_str(&mut out, name);
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            offsets.push(offset);
            offset = (offset + bytes.len()).next_multiple_of(ALIGN);
        }
        for ((_, bytes), at) in self.sections.iter().zip(offsets) {
            out.resize(at, 0);
            out.extend_from_slice(bytes);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// A loaded plan: the file's bytes (64-byte aligned) and an index into them.
#[derive(Debug)]
pub struct Plan {
    bytes: AlignedBytes,
    header: BTreeMap<String, String>,
    sections: Vec<(String, std::ops::Range<usize>)>,
}

impl Plan {
    /// Checks and indexes a plan; sections stay where they are in `bytes`.
    pub fn parse(bytes: AlignedBytes) -> Result<Plan, PlanError> {
        let data = bytes.as_slice();
        if data.len() < MAGIC.len() || data[..MAGIC.len()] != MAGIC {
            return Err(if MAGIC.starts_with(data) && !data.is_empty() {
                PlanError::Truncated(format!("{} bytes", data.len()))
            } else {
                PlanError::NotAPlan
            });
        }
        let mut r = Reader {
            data,
            pos: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(PlanError::FormatVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if data.len() < r.pos + 4 {
            return Err(PlanError::Truncated(format!("{} bytes", data.len())));
        }
        let body_len = data.len() - 4;
        let found = u32::from_le_bytes([
            data[body_len],
            data[body_len + 1],
            data[body_len + 2],
            data[body_len + 3],
        ]);
        let computed = crc32fast::hash(&data[..body_len]);
        let mut r = Reader {
            data: &data[..body_len],
            pos: r.pos,
        };
        let index = (|| {
            let mut header = BTreeMap::new();
            for _ in 0..r.u32()? {
                let k = r.string()?;
                let v = r.string()?;
                header.insert(k, v);
            }
            let mut sections = Vec::new();
            for _ in 0..r.u32()? {
                let name = r.string()?;
                let offset = r.u64()?;
                let len = r.u64()?;
                let end = offset
                    .checked_add(len)
                    .filter(|&e| e <= body_len as u64)
                    .ok_or_else(|| {
                        PlanError::Truncated(format!(
                            "section `{name}` ends past the end of the file"
                        ))
                    })?;
                sections.push((name, offset as usize..end as usize));
            }
            Ok((header, sections))
        })();
        // A framing error in a file whose checksum also fails is reported as corruption: that is the cause.
        if found != computed {
            return Err(match index {
                Err(PlanError::Truncated(what)) => PlanError::Truncated(what),
                _ => PlanError::Corrupt { found, computed },
            });
        }
        let (header, sections) = index?;
        Ok(Plan {
            bytes,
            header,
            sections,
        })
    }

    pub fn header(&self, key: &str) -> Option<&str> {
        self.header.get(key).map(String::as_str)
    }

    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.header
    }

    pub fn section(&self, name: &str) -> Result<&[u8], PlanError> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, range)| &self.bytes.as_slice()[range.clone()])
            .ok_or_else(|| PlanError::MissingSection(name.to_owned()))
    }

    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }
}

/// What a plan must have been built for to be used here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanIdentity {
    pub backend: String,
    pub device: String,
    pub model_sha256: String,
    pub options_sha256: String,
}

impl PlanIdentity {
    pub fn stamp(&self, builder: PlanBuilder) -> PlanBuilder {
        builder
            .header(keys::BACKEND, self.backend.clone())
            .header(keys::DEVICE, self.device.clone())
            .header(keys::MODEL_SHA256, self.model_sha256.clone())
            .header(keys::OPTIONS_SHA256, self.options_sha256.clone())
    }

    /// `Err` with one sentence saying why the plan does not fit.
    pub fn check(&self, plan: &Plan) -> Result<(), String> {
        let found = |k| plan.header(k).unwrap_or("(none)");
        if found(keys::PRODUCER) != PRODUCER {
            return Err(format!(
                "it was built by {}, this is {PRODUCER}",
                found(keys::PRODUCER)
            ));
        }
        if found(keys::BACKEND) != self.backend {
            return Err(format!(
                "it is for the {} backend, not {}",
                found(keys::BACKEND),
                self.backend
            ));
        }
        if found(keys::DEVICE) != self.device {
            return Err(format!(
                "it was built for {}, this device is {}",
                found(keys::DEVICE),
                self.device
            ));
        }
        if found(keys::MODEL_SHA256) != self.model_sha256 {
            return Err("it was built from a different model file".into());
        }
        if found(keys::OPTIONS_SHA256) != self.options_sha256 {
            return Err("it was built with different build options".into());
        }
        Ok(())
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], PlanError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                PlanError::Truncated(format!(
                    "needed {n} bytes at offset {} of {}",
                    self.pos,
                    self.data.len()
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, PlanError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PlanError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self) -> Result<String, PlanError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| PlanError::Malformed("a name is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        PlanBuilder::new()
            .header("backend", "cpu")
            .section("graph", b"abc".to_vec())
            .section("weights", vec![7u8; 1000])
            .to_bytes()
    }

    #[test]
    fn round_trip_and_alignment() {
        let plan = Plan::parse(AlignedBytes::from_slice(&sample())).unwrap();
        assert_eq!(plan.header("backend"), Some("cpu"));
        assert_eq!(plan.header(keys::PRODUCER), Some(PRODUCER));
        assert_eq!(plan.section("graph").unwrap(), b"abc");
        let w = plan.section("weights").unwrap();
        assert_eq!(w, &[7u8; 1000][..]);
        assert_eq!(w.as_ptr() as usize % ALIGN, 0);
        assert_eq!(
            plan.section("nope"),
            Err(PlanError::MissingSection("nope".into()))
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let err = Plan::parse(AlignedBytes::from_slice(&bytes[..cut])).unwrap_err();
            assert!(
                matches!(
                    err,
                    PlanError::Truncated(_) | PlanError::Corrupt { .. } | PlanError::NotAPlan
                ),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn every_single_byte_flip_is_rejected() {
        let bytes = sample();
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(
                Plan::parse(AlignedBytes::from_slice(&bad)).is_err(),
                "flip at {at}"
            );
        }
    }

    #[test]
    fn other_format_version_is_named() {
        let mut bytes = sample();
        bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
        let err = Plan::parse(AlignedBytes::from_slice(&bytes)).unwrap_err();
        assert_eq!(
            err,
            PlanError::FormatVersion {
                found: 0,
                supported: FORMAT_VERSION
            }
        );
        assert!(err.to_string().contains("version 0"));
    }

    #[test]
    fn identity_mismatch_says_why() {
        let id = PlanIdentity {
            backend: "cpu".into(),
            device: "cpu x86_64 [avx2]".into(),
            model_sha256: "aa".into(),
            options_sha256: "bb".into(),
        };
        let plan = |id: &PlanIdentity| {
            Plan::parse(AlignedBytes::from_slice(
                &id.stamp(PlanBuilder::new()).to_bytes(),
            ))
            .unwrap()
        };
        assert_eq!(id.check(&plan(&id)), Ok(()));
        let mut other = id.clone();
        other.device = "cpu aarch64 [neon]".into();
        let why = id.check(&plan(&other)).unwrap_err();
        assert!(why.contains("aarch64") && why.contains("avx2"), "{why}");
        let mut other = id.clone();
        other.options_sha256 = "cc".into();
        assert!(id.check(&plan(&other)).unwrap_err().contains("options"));
    }
}
