//! DetectNet_v2-ResNet18's convolution layers and a chained runner on real buffers, shared by
//! `conv_bench` and the end-to-end test (`tests/detectnet_e2e.rs` includes this file).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tao_kernels::{
    Activation, Context, Conv2dSpec, Epilogue, Nhwc, NhwcMut, PreparedConv, Residual, ResidualAdd,
    nchw_to_nhwc, nhwc_to_nchw,
};

/// One convolution of the network. `input`/`residual` name the tensors it reads.
#[derive(Clone)]
pub struct Layer {
    pub name: String,
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub h: usize,
    pub w: usize,
    pub act: Activation,
    pub input: String,
    pub residual: Option<String>,
}

impl Layer {
    pub fn spec(&self) -> Conv2dSpec {
        let mut s = Conv2dSpec::new(
            self.cin,
            self.cout,
            self.kernel,
            self.stride,
            self.kernel / 2,
            [self.h, self.w],
        );
        s.epilogue = Epilogue::new(
            self.act,
            if self.residual.is_some() {
                ResidualAdd::BeforeActivation
            } else {
                ResidualAdd::None
            },
        );
        s
    }
    pub fn out_hw(&self) -> [usize; 2] {
        let p = self.kernel / 2;
        [
            (self.h + 2 * p - self.kernel) / self.stride + 1,
            (self.w + 2 * p - self.kernel) / self.stride + 1,
        ]
    }
}

/// DetectNet_v2-ResNet18 as TAO builds it: 7×7/2 stem without max-pool, stages of two basic
/// blocks with strides 2, 2, 2, 1, projection shortcuts where the shape changes, two 1×1 heads.
pub fn detectnet_resnet18(h: usize, w: usize) -> Vec<Layer> {
    detectnet(h, w, Activation::Relu, 3, |_| None)
}

/// The real LPDNet (US, pruned): the same topology with pruned widths, ReLU6 and one class.
pub fn lpdnet(h: usize, w: usize) -> Vec<Layer> {
    let widths = [
        ("conv1", 16),
        ("block_1a_conv_1", 24),
        ("block_1a_conv_2", 48),
        ("block_1b_conv_1", 32),
        ("block_1b_conv_2", 48),
        ("block_2a_conv_1", 32),
        ("block_2a_conv_2", 56),
        ("block_2b_conv_1", 32),
        ("block_2b_conv_2", 56),
        ("block_3a_conv_1", 32),
        ("block_3a_conv_2", 56),
        ("block_3b_conv_1", 24),
        ("block_3b_conv_2", 56),
        ("block_4a_conv_1", 24),
        ("block_4a_conv_2", 72),
        ("block_4b_conv_1", 16),
        ("block_4b_conv_2", 72),
    ];
    let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
    detectnet(h, w, relu6, 1, |name| {
        widths.iter().find(|(n, _)| *n == name).map(|&(_, c)| c)
    })
}

/// DetectNet_v2-ResNet18 with activation `act`, `classes` coverage maps, and the output channels
/// of each 3×3 / stem convolution from `width` (standard ResNet widths where it gives none; the
/// second conv of a block also fixes the block's output and shortcut width).
pub fn detectnet(
    h: usize,
    w: usize,
    act: Activation,
    classes: usize,
    width: impl Fn(&str) -> Option<usize>,
) -> Vec<Layer> {
    let mut layers = Vec::new();
    let mut add = |name: &str,
                   cin,
                   cout,
                   kernel,
                   stride,
                   hw: [usize; 2],
                   act,
                   input: &str,
                   residual: Option<&str>| {
        layers.push(Layer {
            name: name.to_string(),
            cin,
            cout,
            kernel,
            stride,
            h: hw[0],
            w: hw[1],
            act,
            input: input.to_string(),
            residual: residual.map(str::to_string),
        });
    };
    let stem = width("conv1").unwrap_or(64);
    add("conv1", 3, stem, 7, 2, [h, w], act, "image", None);
    let mut hw = [h / 2, w / 2];
    let mut cin = stem;
    let mut x = "conv1".to_string();
    for (stage, (base, stride)) in [(64, 2), (128, 2), (256, 2), (512, 1)]
        .into_iter()
        .enumerate()
    {
        for block in 0..2 {
            let tag = format!("block_{}{}", stage + 1, if block == 0 { 'a' } else { 'b' });
            let s = if block == 0 { stride } else { 1 };
            let out_hw = [(hw[0] + 2 - 3) / s + 1, (hw[1] + 2 - 3) / s + 1];
            let c1 = format!("{tag}_conv_1");
            let c2 = format!("{tag}_conv_2");
            let mid = width(&c1).unwrap_or(base);
            let cout = width(&c2).unwrap_or(base);
            let shortcut = if s != 1 || cin != cout {
                let name = format!("{tag}_conv_shortcut");
                add(&name, cin, cout, 1, s, hw, Activation::None, &x, None);
                name
            } else {
                x.clone()
            };
            add(&c1, cin, mid, 3, s, hw, act, &x, None);
            add(&c2, mid, cout, 3, 1, out_hw, act, &c1, Some(&shortcut));
            x = c2;
            hw = out_hw;
            cin = cout;
        }
    }
    add(
        "output_cov",
        cin,
        classes,
        1,
        1,
        hw,
        Activation::Sigmoid,
        &x,
        None,
    );
    add(
        "output_bbox",
        cin,
        4 * classes,
        1,
        1,
        hw,
        Activation::None,
        &x,
        None,
    );
    layers
}

/// Buffers of one chained run of the network.
pub struct Network {
    buffers: HashMap<String, Vec<f32>>,
    scratch: Vec<f32>,
    pub cov: Vec<f32>,
    pub bbox: Vec<f32>,
}

impl Network {
    pub fn new(
        ctx: &Context,
        layers: &[Layer],
        convs: &[PreparedConv],
        h: usize,
        w: usize,
    ) -> Result<Network, String> {
        let mut buffers: HashMap<String, Vec<f32>> = HashMap::new();
        buffers.insert("image".into(), vec![0f32; 3 * h * w]);
        for l in layers {
            let [oh, ow] = l.out_hw();
            buffers.insert(l.name.clone(), vec![0f32; oh * ow * l.cout]);
        }
        let scratch_len = convs
            .iter()
            .map(|c| c.scratch_len(ctx.threads()))
            .max()
            .unwrap_or(0);
        let head = |name: &str| -> Result<usize, String> {
            let l = layers
                .iter()
                .find(|l| l.name == name)
                .ok_or(format!("no layer {name}"))?;
            let [gh, gw] = l.out_hw();
            Ok(l.cout * gh * gw)
        };
        Ok(Network {
            buffers,
            scratch: vec![0f32; scratch_len],
            cov: vec![0f32; head("output_cov")?],
            bbox: vec![0f32; head("output_bbox")?],
        })
    }

    /// NCHW image → NHWC, every convolution in order, NHWC heads → NCHW `cov` / `bbox`.
    pub fn run(
        &mut self,
        ctx: &Context,
        layers: &[Layer],
        convs: &[PreparedConv],
        image: &[f32],
        h: usize,
        w: usize,
    ) -> Result<(), String> {
        let buffers = &mut self.buffers;
        {
            let dst = buffers.get_mut("image").ok_or("image buffer")?;
            nchw_to_nhwc(
                ctx,
                image,
                NhwcMut::new(dst, [1, h, w, 3]).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
        }
        for (l, conv) in layers.iter().zip(convs) {
            let [oh, ow] = l.out_hw();
            let mut out = buffers.remove(&l.name).ok_or("output buffer")?;
            {
                let input = buffers.get(&l.input).ok_or(format!("input {}", l.input))?;
                let input = Nhwc::new(input, [1, l.h, l.w, l.cin]).map_err(|e| e.to_string())?;
                let residual = match &l.residual {
                    Some(r) => Residual::Tensor(
                        Nhwc::new(
                            buffers.get(r).ok_or(format!("residual {r}"))?,
                            [1, oh, ow, l.cout],
                        )
                        .map_err(|e| e.to_string())?,
                    ),
                    None => Residual::None,
                };
                let output =
                    NhwcMut::new(&mut out, [1, oh, ow, l.cout]).map_err(|e| e.to_string())?;
                conv.execute(ctx, input, output, residual, &mut self.scratch)
                    .map_err(|e| format!("{}: {e}", l.name))?;
            }
            buffers.insert(l.name.clone(), out);
        }
        for (name, dst) in [
            ("output_cov", &mut self.cov),
            ("output_bbox", &mut self.bbox),
        ] {
            let src = buffers.get(name).ok_or(name)?;
            let head = layers.iter().find(|l| l.name == name).ok_or(name)?;
            let ([gh, gw], c) = (head.out_hw(), head.cout);
            nhwc_to_nchw(
                ctx,
                Nhwc::new(src, [1, gh, gw, c]).map_err(|e| e.to_string())?,
                dst,
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read_f32(path: &Path) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "{}: length {} is not a multiple of 4",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Folded weights and bias of each convolution, by layer name.
pub type FoldedWeights = HashMap<String, (Vec<f32>, Vec<f32>)>;

/// Folded weights of every convolution by name, from `models/export_folded.py`'s output
/// (exported on first use next to the generated model).
pub fn folded_weights(python: &Path, model: &Path) -> Result<(PathBuf, FoldedWeights), String> {
    export_weights(python, model, false, &[])
}

/// As [`folded_weights`]; `ort_fold` lets ONNX Runtime fold BatchNorm written as arithmetic
/// first (UFF exports such as LPDNet). Names ending in `/convolution` are also stored without
/// that suffix.
///
/// `extra` arguments go to `export_folded.py` (for example `--image PHOTO --bgr`).
pub fn export_weights(
    python: &Path,
    model: &Path,
    ort_fold: bool,
    extra: &[&std::ffi::OsStr],
) -> Result<(PathBuf, FoldedWeights), String> {
    let dir = model.with_extension("folded");
    // Export again when missing or written by an older export format (8 fields per line now).
    let current = std::fs::read_to_string(dir.join("weights.txt"))
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.split_whitespace().count() == 8))
        .unwrap_or(false);
    if !current {
        let mut command = Command::new(python);
        command
            .arg(workspace_root().join("models/export_folded.py"))
            .arg(model)
            .arg(&dir);
        if ort_fold {
            command.arg("--ort-fold");
        }
        command.args(extra);
        let status = command
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("export_folded.py: {e}"))?;
        if !status.success() {
            return Err(format!("export_folded.py failed: {status}"));
        }
    }
    let blob = read_f32(&dir.join("weights.bin"))?;
    let index = std::fs::read_to_string(dir.join("weights.txt")).map_err(|e| e.to_string())?;
    let mut map = std::collections::HashMap::new();
    for line in index.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> Result<usize, String> {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .ok_or(format!("bad weights.txt line {line:?}"))
        };
        let (d0, d1, kh, kw, w_off, b_off, b_len) = (
            num(1)?,
            num(2)?,
            num(3)?,
            num(4)?,
            num(5)?,
            num(6)?,
            num(7)?,
        );
        let w = blob
            .get(w_off..w_off + d0 * d1 * kh * kw)
            .ok_or("weights.bin too short")?;
        let b = blob
            .get(b_off..b_off + b_len)
            .ok_or("weights.bin too short")?;
        let name = f[0].strip_suffix("/convolution").unwrap_or(f[0]);
        map.insert(name.to_string(), (w.to_vec(), b.to_vec()));
    }
    Ok((dir, map))
}

/// `max |got - want| / max |want|`.
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want
        .iter()
        .fold(0f64, |m, &x| m.max(x.abs() as f64))
        .max(1e-30);
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()));
    err / scale
}
