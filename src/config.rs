//! Reader for DeepStream `nvinfer` configuration files (GLib key-file syntax): the `[property]` keys
//! that apply to TAO models and the `[class-attrs-all]` / `[class-attrs-<id>]` groups.
//!
//! Parsing is two steps: [`KeyFile::parse`] splits the text into groups and key/value lines, then
//! [`NvinferConfig::from_key_file`] types the keys this element understands. Keys that nvinfer knows
//! but this element does not apply are kept in [`NvinferConfig::ignored`] so they can be logged.
//! Every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub detail: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.detail)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.detail)
        }
    }
}

impl std::error::Error for ConfigError {}

/// One `key=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A key file: groups in file order, each with its entries in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    pub groups: Vec<(String, Vec<Entry>)>,
}

impl KeyFile {
    /// Splits `text` into groups. Comments (`#` at the start of a line) and blank lines are skipped;
    /// keys before the first group, lines without `=`, and malformed group headers are errors.
    pub fn parse(text: &str, path: &Path) -> Result<KeyFile, ConfigError> {
        let err = |line: usize, detail: String| ConfigError {
            path: path.to_owned(),
            line,
            detail,
        };
        let mut groups: Vec<(String, Vec<Entry>)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| err(line_no, format!("group header `{line}` has no closing ]")))?
                    .trim();
                if name.is_empty() || name.contains(['[', ']']) {
                    return Err(err(line_no, format!("bad group header `{line}`")));
                }
                groups.push((name.to_owned(), Vec::new()));
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                err(
                    line_no,
                    format!("`{line}` is neither a group header nor key=value"),
                )
            })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(err(line_no, format!("`{line}` has an empty key")));
            }
            let Some((_, entries)) = groups.last_mut() else {
                return Err(err(
                    line_no,
                    format!("key `{key}` comes before any [group]"),
                ));
            };
            entries.push(Entry {
                key: key.to_owned(),
                value: value.trim().to_owned(),
                line: line_no,
            });
        }
        Ok(KeyFile { groups })
    }
}

/// Detection parameters of one class (`[class-attrs-*]`); `None` means "not given".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassAttrs {
    pub pre_cluster_threshold: Option<f64>,
    pub post_cluster_threshold: Option<f64>,
    pub nms_iou_threshold: Option<f64>,
    pub top_k: Option<i64>,
    pub eps: Option<f64>,
    pub min_boxes: Option<u32>,
    pub group_threshold: Option<u32>,
    pub dbscan_min_score: Option<f64>,
    pub detected_min_w: Option<u32>,
    pub detected_min_h: Option<u32>,
    pub detected_max_w: Option<u32>,
    pub detected_max_h: Option<u32>,
}

impl ClassAttrs {
    /// Fields of `self` that are unset take the value from `fallback`.
    pub fn or(&self, fallback: &ClassAttrs) -> ClassAttrs {
        ClassAttrs {
            pre_cluster_threshold: self
                .pre_cluster_threshold
                .or(fallback.pre_cluster_threshold),
            post_cluster_threshold: self
                .post_cluster_threshold
                .or(fallback.post_cluster_threshold),
            nms_iou_threshold: self.nms_iou_threshold.or(fallback.nms_iou_threshold),
            top_k: self.top_k.or(fallback.top_k),
            eps: self.eps.or(fallback.eps),
            min_boxes: self.min_boxes.or(fallback.min_boxes),
            group_threshold: self.group_threshold.or(fallback.group_threshold),
            dbscan_min_score: self.dbscan_min_score.or(fallback.dbscan_min_score),
            detected_min_w: self.detected_min_w.or(fallback.detected_min_w),
            detected_min_h: self.detected_min_h.or(fallback.detected_min_h),
            detected_max_w: self.detected_max_w.or(fallback.detected_max_w),
            detected_max_h: self.detected_max_h.or(fallback.detected_max_h),
        }
    }
}

/// Input dimensions as nvinfer writes them (`c;h;w[;order]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDims {
    pub dims: Vec<usize>,
    /// 0 = NCHW, 1 = NHWC (as in `uff-input-dims`), when given.
    pub order: Option<u32>,
}

/// The typed `[property]` keys (and class attributes). Paths are resolved against the config file's
/// directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NvinferConfig {
    pub path: PathBuf,
    /// `tlt-encoded-model`, `onnx-file` or `uff-file` (first one given, in that order).
    pub model: Option<PathBuf>,
    pub model_key: Option<String>,
    pub model_engine_file: Option<PathBuf>,
    pub int8_calib_file: Option<PathBuf>,
    pub labels_file: Option<PathBuf>,
    pub input_blob_name: Option<String>,
    pub input_dims: Option<InputDims>,
    /// `uff-input-order`: 0 NCHW, 1 NHWC, 2 NC.
    pub input_order: Option<u32>,
    pub output_blob_names: Option<Vec<String>>,
    pub batch_size: Option<u32>,
    /// `network-mode`: 0 FP32, 1 INT8, 2 FP16.
    pub network_mode: Option<u32>,
    pub workspace_size: Option<u32>,
    pub gpu_id: Option<u32>,
    pub net_scale_factor: Option<f64>,
    pub offsets: Option<Vec<f64>>,
    /// `model-color-format`: 0 RGB, 1 BGR, 2 GRAY.
    pub model_color_format: Option<u32>,
    pub maintain_aspect_ratio: Option<bool>,
    pub symmetric_padding: Option<bool>,
    pub scaling_filter: Option<u32>,
    /// `network-type`: 0 detector, 1 classifier, 2 segmentation, 3 instance seg., 100 other.
    pub network_type: Option<u32>,
    pub num_detected_classes: Option<u32>,
    /// `cluster-mode`: 0 group rectangles, 1 DBSCAN, 2 NMS, 3 DBSCAN+NMS, 4 none.
    pub cluster_mode: Option<u32>,
    pub classifier_threshold: Option<f64>,
    pub segmentation_threshold: Option<f64>,
    pub output_tensor_meta: Option<bool>,
    pub interval: Option<u32>,
    /// `process-mode`: 1 primary (whole frames), 2 secondary (objects of an earlier detector).
    pub process_mode: Option<u32>,
    pub gie_unique_id: Option<u32>,
    pub operate_on_gie_id: Option<i32>,
    pub operate_on_class_ids: Option<Vec<u32>>,
    pub class_attrs_all: ClassAttrs,
    pub class_attrs: BTreeMap<u32, ClassAttrs>,
    /// `group key=value (line N)` for every key read but not applied by this element.
    pub ignored: Vec<String>,
}

impl NvinferConfig {
    /// Reads and parses a config file.
    pub fn read(path: &Path) -> Result<NvinferConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: 0,
            detail: format!("cannot read config file: {e}"),
        })?;
        NvinferConfig::parse(&text, path)
    }

    /// Parses config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<NvinferConfig, ConfigError> {
        NvinferConfig::from_key_file(&KeyFile::parse(text, path)?, path)
    }

    pub fn from_key_file(file: &KeyFile, path: &Path) -> Result<NvinferConfig, ConfigError> {
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        let mut cfg = NvinferConfig {
            path: path.to_owned(),
            ..NvinferConfig::default()
        };
        let mut saw_property = false;
        for (group, entries) in &file.groups {
            if group == "property" {
                saw_property = true;
                for e in entries {
                    cfg.property(e, &base)?;
                }
            } else if let Some(which) = group.strip_prefix("class-attrs-") {
                let attrs = if which == "all" {
                    &mut cfg.class_attrs_all
                } else {
                    let id: u32 = which.parse().map_err(|_| ConfigError {
                        path: path.to_owned(),
                        line: entries.first().map_or(0, |e| e.line),
                        detail: format!("group [{group}]: `{which}` is not `all` or a class id"),
                    })?;
                    cfg.class_attrs.entry(id).or_default()
                };
                for e in entries {
                    if !class_attr(attrs, e, path)? {
                        cfg.ignored
                            .push(format!("[{group}] {}={} (line {})", e.key, e.value, e.line));
                    }
                }
            } else {
                for e in entries {
                    cfg.ignored
                        .push(format!("[{group}] {}={} (line {})", e.key, e.value, e.line));
                }
            }
        }
        if !saw_property {
            return Err(ConfigError {
                path: path.to_owned(),
                line: 0,
                detail: "no [property] group: not an nvinfer config file".into(),
            });
        }
        Ok(cfg)
    }

    fn property(&mut self, e: &Entry, base: &Path) -> Result<(), ConfigError> {
        let p = Parse {
            entry: e,
            path: &self.path,
        };
        let resolve = |v: &str| base.join(v);
        match e.key.as_str() {
            "tlt-encoded-model" | "onnx-file" | "uff-file" => {
                // The first model key given wins, like nvinfer's precedence for TAO files.
                if self.model.is_none() {
                    self.model = Some(resolve(p.non_empty()?));
                }
            }
            "tlt-model-key" => self.model_key = Some(p.non_empty()?.to_owned()),
            "model-engine-file" => self.model_engine_file = Some(resolve(p.non_empty()?)),
            "int8-calib-file" => self.int8_calib_file = Some(resolve(p.non_empty()?)),
            "labelfile-path" => self.labels_file = Some(resolve(p.non_empty()?)),
            "uff-input-blob-name" => self.input_blob_name = Some(p.non_empty()?.to_owned()),
            "uff-input-dims" | "input-dims" | "infer-dims" => {
                let values = p.list::<usize>()?;
                let (dims, order) = match values.len() {
                    3 => (values, None),
                    4 if e.key != "infer-dims" => {
                        let order = values[3];
                        if order > 1 {
                            return Err(p.error(format!(
                                "order {order} (the 4th value) must be 0 (NCHW) or 1 (NHWC)"
                            )));
                        }
                        (values[..3].to_vec(), Some(order as u32))
                    }
                    n => {
                        return Err(p.error(format!(
                            "expected c;h;w{} but found {n} values",
                            if e.key == "infer-dims" {
                                ""
                            } else {
                                "[;order]"
                            }
                        )));
                    }
                };
                if dims.contains(&0) {
                    return Err(p.error("dimensions must be positive".into()));
                }
                self.input_dims = Some(InputDims { dims, order });
            }
            "uff-input-order" => self.input_order = Some(p.range(0, 2)?),
            "output-blob-names" => {
                let names: Vec<String> = e
                    .value
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if names.is_empty() {
                    return Err(p.error("no output names".into()));
                }
                self.output_blob_names = Some(names);
            }
            "batch-size" => self.batch_size = Some(p.range(1, 1024)?),
            "network-mode" => self.network_mode = Some(p.range(0, 2)?),
            "workspace-size" => self.workspace_size = Some(p.number()?),
            "gpu-id" => self.gpu_id = Some(p.number()?),
            "net-scale-factor" => self.net_scale_factor = Some(p.finite()?),
            "offsets" => self.offsets = Some(p.list::<f64>()?),
            "model-color-format" => self.model_color_format = Some(p.range(0, 2)?),
            "maintain-aspect-ratio" => self.maintain_aspect_ratio = Some(p.boolean()?),
            "symmetric-padding" => self.symmetric_padding = Some(p.boolean()?),
            "scaling-filter" => self.scaling_filter = Some(p.number()?),
            "network-type" => {
                let t: u32 = p.number()?;
                if !matches!(t, 0..=3 | 100) {
                    return Err(p.error(format!(
                        "{t} is not a network type (0 detector, 1 classifier, 2 segmentation, 3 instance segmentation, 100 other)"
                    )));
                }
                self.network_type = Some(t);
            }
            "num-detected-classes" => self.num_detected_classes = Some(p.range(1, 65535)?),
            "cluster-mode" => self.cluster_mode = Some(p.range(0, 4)?),
            "classifier-threshold" => self.classifier_threshold = Some(p.finite()?),
            "segmentation-threshold" => self.segmentation_threshold = Some(p.finite()?),
            "output-tensor-meta" => self.output_tensor_meta = Some(p.boolean()?),
            "interval" => self.interval = Some(p.number()?),
            "process-mode" => self.process_mode = Some(p.range(1, 2)?),
            "gie-unique-id" => self.gie_unique_id = Some(p.number()?),
            "operate-on-gie-id" => self.operate_on_gie_id = Some(p.number()?),
            "operate-on-class-ids" => self.operate_on_class_ids = Some(p.list::<u32>()?),
            _ => self.ignored.push(format!(
                "[property] {}={} (line {})",
                e.key, e.value, e.line
            )),
        }
        Ok(())
    }
}

/// Reads one `[class-attrs-*]` key into `attrs`; returns false for keys this element ignores.
fn class_attr(attrs: &mut ClassAttrs, e: &Entry, path: &Path) -> Result<bool, ConfigError> {
    let p = Parse { entry: e, path };
    match e.key.as_str() {
        // `threshold` is the older spelling of pre-cluster-threshold.
        "pre-cluster-threshold" | "threshold" => {
            attrs.pre_cluster_threshold = Some(p.unit_interval()?)
        }
        "post-cluster-threshold" => attrs.post_cluster_threshold = Some(p.unit_interval()?),
        "nms-iou-threshold" => attrs.nms_iou_threshold = Some(p.unit_interval()?),
        "topk" => attrs.top_k = Some(p.number()?),
        "eps" => attrs.eps = Some(p.finite()?),
        "minBoxes" => attrs.min_boxes = Some(p.number()?),
        "group-threshold" => attrs.group_threshold = Some(p.number()?),
        "dbscan-min-score" => attrs.dbscan_min_score = Some(p.finite()?),
        "detected-min-w" => attrs.detected_min_w = Some(p.number()?),
        "detected-min-h" => attrs.detected_min_h = Some(p.number()?),
        "detected-max-w" => attrs.detected_max_w = Some(p.number()?),
        "detected-max-h" => attrs.detected_max_h = Some(p.number()?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Typed reading of one entry's value, with errors naming file, line and key.
struct Parse<'a> {
    entry: &'a Entry,
    path: &'a Path,
}

impl Parse<'_> {
    fn error(&self, detail: String) -> ConfigError {
        ConfigError {
            path: self.path.to_owned(),
            line: self.entry.line,
            detail: format!("{}={}: {detail}", self.entry.key, self.entry.value),
        }
    }

    fn non_empty(&self) -> Result<&str, ConfigError> {
        let v = self.entry.value.as_str();
        if v.is_empty() {
            Err(self.error("empty value".into()))
        } else {
            Ok(v)
        }
    }

    fn number<T: std::str::FromStr>(&self) -> Result<T, ConfigError> {
        self.entry
            .value
            .parse()
            .map_err(|_| self.error(format!("not a {}", std::any::type_name::<T>())))
    }

    fn range(&self, min: u32, max: u32) -> Result<u32, ConfigError> {
        let v: u32 = self.number()?;
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(self.error(format!("must be between {min} and {max}")))
        }
    }

    fn finite(&self) -> Result<f64, ConfigError> {
        let v: f64 = self.number()?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(self.error("must be a finite number".into()))
        }
    }

    fn unit_interval(&self) -> Result<f64, ConfigError> {
        let v = self.finite()?;
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(self.error("must be between 0 and 1".into()))
        }
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.entry.value.to_ascii_lowercase().as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(self.error("expected 0, 1, true or false".into())),
        }
    }

    /// `;`-separated list (a trailing `;` is allowed, as GLib writes lists).
    fn list<T: std::str::FromStr>(&self) -> Result<Vec<T>, ConfigError> {
        let items: Vec<&str> = self
            .entry
            .value
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Err(self.error("empty list".into()));
        }
        items
            .iter()
            .map(|s| {
                s.parse().map_err(|_| {
                    self.error(format!("`{s}` is not a {}", std::any::type_name::<T>()))
                })
            })
            .collect()
    }
}

/// Resolves a model-side path from a config: as written (relative to the config's directory), else,
/// when that does not exist, the same file name beside the config. DeepStream sample configs point
/// into their own tree (`../models/...`); users copy model and config into one folder.
pub fn locate_beside_config(path: &Path, config: &Path) -> Option<PathBuf> {
    if path.exists() {
        return None;
    }
    let beside = config.parent()?.join(path.file_name()?);
    beside.exists().then_some(beside)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LPD_LIKE: &str = "\
# comment
[property]
gpu-id=0
net-scale-factor=0.0039215697906911373
model-color-format=1
labelfile-path=../models/LP/LPD/usa_lpd_label.txt
tlt-encoded-model=../models/LP/LPD/usa_pruned.etlt
tlt-model-key=nvidia_tlt
int8-calib-file=../models/LP/LPD/usa_lpd_cal.bin
uff-input-dims=3;480;640;0
uff-input-blob-name=input_1
batch-size=16
network-mode=1
num-detected-classes=1
process-mode=2
network-type=0
cluster-mode=3
output-blob-names=output_cov/Sigmoid;output_bbox/BiasAdd

[class-attrs-all]
pre-cluster-threshold=0.3
roi-top-offset=0

[class-attrs-2]
nms-iou-threshold=0.6
";

    #[test]
    fn reads_an_lpdnet_style_config() {
        let cfg = NvinferConfig::parse(LPD_LIKE, Path::new("/cfg/dir/lpd.txt")).unwrap();
        assert_eq!(
            cfg.model.as_deref(),
            Some(Path::new("/cfg/dir/../models/LP/LPD/usa_pruned.etlt"))
        );
        assert_eq!(cfg.model_key.as_deref(), Some("nvidia_tlt"));
        assert_eq!(
            cfg.input_dims,
            Some(InputDims {
                dims: vec![3, 480, 640],
                order: Some(0)
            })
        );
        assert_eq!(
            cfg.output_blob_names.as_deref(),
            Some(
                &[
                    "output_cov/Sigmoid".to_owned(),
                    "output_bbox/BiasAdd".to_owned()
                ][..]
            )
        );
        assert_eq!(cfg.batch_size, Some(16));
        assert_eq!(cfg.network_mode, Some(1));
        assert_eq!(cfg.model_color_format, Some(1));
        assert_eq!(cfg.cluster_mode, Some(3));
        assert!((cfg.net_scale_factor.unwrap() - 1.0 / 255.0).abs() < 1e-8);
        assert_eq!(cfg.class_attrs_all.pre_cluster_threshold, Some(0.3));
        assert_eq!(cfg.class_attrs[&2].nms_iou_threshold, Some(0.6));
        let merged = cfg.class_attrs[&2].or(&cfg.class_attrs_all);
        assert_eq!(merged.pre_cluster_threshold, Some(0.3));
        assert_eq!(cfg.process_mode, Some(2));
        assert!(cfg.ignored.iter().any(|s| s.contains("roi-top-offset")));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = "[property]\nbatch-size=many\n";
        let e = NvinferConfig::parse(text, Path::new("c.txt")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("c.txt:2: batch-size=many"), "{e}");

        let e = NvinferConfig::parse("[property]\nuff-input-dims=3;480\n", Path::new("c.txt"))
            .unwrap_err();
        assert!(e.to_string().contains("found 2 values"), "{e}");

        let e = NvinferConfig::parse("net-scale-factor=1\n", Path::new("c.txt")).unwrap_err();
        assert!(e.to_string().contains("before any [group]"), "{e}");

        let e = NvinferConfig::parse("[property\n", Path::new("c.txt")).unwrap_err();
        assert!(e.to_string().contains("no closing ]"), "{e}");

        let e = NvinferConfig::parse("[other]\na=1\n", Path::new("c.txt")).unwrap_err();
        assert!(e.to_string().contains("no [property] group"), "{e}");

        let e = NvinferConfig::parse(
            "[property]\n[class-attrs-x]\nthreshold=0.1\n",
            Path::new("c.txt"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("class-attrs-x"), "{e}");

        let e = NvinferConfig::parse(
            "[property]\n[class-attrs-all]\npre-cluster-threshold=1.5\n",
            Path::new("c.txt"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("between 0 and 1"), "{e}");

        let e =
            NvinferConfig::parse("[property]\nnetwork-type=7\n", Path::new("c.txt")).unwrap_err();
        assert!(e.to_string().contains("not a network type"), "{e}");
    }

    #[test]
    fn offsets_and_booleans() {
        let cfg = NvinferConfig::parse(
            "[property]\noffsets=123.675;116.28;103.53;\nmaintain-aspect-ratio=1\noutput-tensor-meta=true\n",
            Path::new("c.txt"),
        )
        .unwrap();
        assert_eq!(cfg.offsets, Some(vec![123.675, 116.28, 103.53]));
        assert_eq!(cfg.maintain_aspect_ratio, Some(true));
        assert_eq!(cfg.output_tensor_meta, Some(true));
    }

    #[test]
    fn model_paths_fall_back_to_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c.txt");
        std::fs::write(dir.path().join("m.etlt"), b"x").unwrap();
        let written = dir.path().join("../models/m.etlt");
        assert_eq!(
            locate_beside_config(&written, &config),
            Some(dir.path().join("m.etlt"))
        );
        // A path that exists is used as written.
        assert_eq!(
            locate_beside_config(&dir.path().join("m.etlt"), &config),
            None
        );
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "\u{0}",
            "[",
            "]",
            "=",
            "[a]\n=",
            "[property]\ninput-dims=;;;;",
        ] {
            let _ = NvinferConfig::parse(text, Path::new("g.txt"));
        }
    }
}
