//! The GPU program: what the engine executes, independent of any GPU. Values live in one device
//! arena; steps are either cuDNN convolutions or NVRTC kernels described by plain index maps, so the
//! same program can be run on the CPU by [`crate::emulate`] and checked without a GPU.

use tao_engine::backend::IoDesc;

/// Largest tensor rank the index-map kernels take.
pub const MAX_RANK: usize = 6;
/// Most channels of a space-to-depth input value (`S2D_MAX` in the kernel source).
pub const S2D_MAX_CHANNELS: usize = 16;
/// Alignment of every value in the arena and every weight in the weight blob (bytes).
pub const ALIGN: usize = 256;

/// Storage type of activations and weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "fp32",
            DType::F16 => "fp16",
        }
    }
}

/// Physical order of a value's elements. Values of any rank may be row-major; 4-D values may also be
/// NHWC (what the convolutions read and write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    RowMajor,
    Nhwc,
}

/// One tensor of the program. `shape` is logical (ONNX order) for one image: `shape[0] == 1`; the
/// arena holds `max_batch` images of it one after the other.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub shape: Vec<usize>,
    pub layout: Layout,
    /// Byte offset of the value's block in the arena.
    pub offset: usize,
}

impl Value {
    pub fn per_image(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Element strides of each logical dimension; dimension 0 steps from one image to the next.
    pub fn strides(&self) -> Vec<i64> {
        match self.layout {
            Layout::Nhwc if self.shape.len() == 4 => {
                let [_, c, h, w] = [self.shape[0], self.shape[1], self.shape[2], self.shape[3]];
                vec![(h * w * c) as i64, 1, (w * c) as i64, c as i64]
            }
            _ => row_major_strides(&self.shape),
        }
    }

    /// Bytes of the value's block for `max_batch` images.
    pub fn block_bytes(&self, dtype: DType, max_batch: usize) -> usize {
        (self.per_image() * dtype.size() * max_batch).next_multiple_of(ALIGN)
    }
}

/// Row-major element strides; dimension 0's stride is the product of the others (one image).
pub fn row_major_strides(shape: &[usize]) -> Vec<i64> {
    let mut strides = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d as i64;
    }
    strides
}

/// A slice of the weight blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightRef {
    /// Byte offset in the blob.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
    pub dtype: DType,
}

/// An element-wise function of one input with up to two parameters. The codes are shared with the
/// CUDA kernels (`unary_f` in the kernel source).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unary {
    pub code: i32,
    pub p0: f32,
    pub p1: f32,
}

pub mod unary {
    pub const IDENTITY: i32 = 0;
    pub const RELU: i32 = 1;
    pub const CLIP: i32 = 2;
    pub const SIGMOID: i32 = 3;
    pub const TANH: i32 = 4;
    pub const LEAKY_RELU: i32 = 5;
    pub const EXP: i32 = 6;
    pub const LOG: i32 = 7;
    pub const SQRT: i32 = 8;
    pub const RECIPROCAL: i32 = 9;
    pub const NEG: i32 = 10;
    pub const ABS: i32 = 11;
    pub const SOFTPLUS: i32 = 12;
    pub const FLOOR: i32 = 13;
    pub const CEIL: i32 = 14;
    pub const ELU: i32 = 15;
    pub const HARD_SIGMOID: i32 = 16;
    pub const HARD_SWISH: i32 = 17;
    pub const ERF: i32 = 18;
    pub const SOFTSIGN: i32 = 19;
    pub const SIGN: i32 = 20;
    pub const ROUND: i32 = 21;
    pub const SELU: i32 = 22;
    pub const SIN: i32 = 23;
    pub const COS: i32 = 24;
}

impl Unary {
    pub const IDENTITY: Unary = Unary {
        code: unary::IDENTITY,
        p0: 0.0,
        p1: 0.0,
    };

    pub fn new(code: i32) -> Unary {
        Unary {
            code,
            p0: 0.0,
            p1: 0.0,
        }
    }

    pub fn with(code: i32, p0: f32, p1: f32) -> Unary {
        Unary { code, p0, p1 }
    }
}

/// Two-input element-wise functions (codes shared with `binary_f` in the kernel source).
pub mod binary {
    pub const ADD: i32 = 0;
    pub const SUB: i32 = 1;
    pub const MUL: i32 = 2;
    pub const DIV: i32 = 3;
    pub const POW: i32 = 4;
    pub const MAX: i32 = 5;
    pub const MIN: i32 = 6;
    pub const PRELU: i32 = 7;
}

/// Reductions (codes shared with the kernel source).
pub mod reduce {
    pub const SUM: i32 = 0;
    pub const MEAN: i32 = 1;
    pub const MAX: i32 = 2;
    pub const MIN: i32 = 3;
    pub const PROD: i32 = 4;
    pub const L1: i32 = 5;
    pub const L2: i32 = 6;
    pub const LOG_SUM: i32 = 7;
    pub const LOG_SUM_EXP: i32 = 8;
    pub const SUM_SQUARE: i32 = 9;
}

/// An element-wise index map: the step visits every index of `dims` (row-major) and reads/writes
/// element `offset + Σ index·stride` of each operand. `dims[0]` is the batch: 1 here, the batch size
/// at run time; operands that do not depend on the image have stride 0 there.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Map {
    pub dims: Vec<usize>,
    pub dst: Vec<i64>,
    pub a: Vec<i64>,
    pub b: Vec<i64>,
    pub dst_offset: i64,
    pub a_offset: i64,
    pub b_offset: i64,
}

impl Map {
    /// The number of elements visited for `batch` images.
    pub fn count(&self, batch: usize) -> usize {
        self.dims.iter().skip(1).product::<usize>() * batch
    }

    /// The map for `batch` images in the order the kernels walk it: dimensions of size 1 dropped,
    /// the rest ordered by output stride (the output's contiguous dimension innermost, so that
    /// neighbouring threads touch neighbouring elements), and neighbours contiguous in every
    /// operand merged. The (output, a, b) offsets visited are the same set.
    pub fn walk(&self, batch: usize) -> Walk {
        let stride = |v: &[i64], k: usize| v.get(k).copied().unwrap_or(0);
        let mut order: Vec<usize> = (0..self.dims.len())
            .filter(|&k| {
                let size = if k == 0 { batch } else { self.dims[k] };
                size != 1
            })
            .collect();
        order.sort_by_key(|&k| {
            std::cmp::Reverse((
                stride(&self.dst, k).unsigned_abs(),
                stride(&self.a, k).unsigned_abs(),
            ))
        });
        let mut w = Walk::default();
        for k in order {
            let size = if k == 0 { batch } else { self.dims[k] };
            let (d, a, b) = (stride(&self.dst, k), stride(&self.a, k), stride(&self.b, k));
            if let Some(last) = w.dims.len().checked_sub(1) {
                let n = size as i64;
                if w.dst[last] == d * n && w.a[last] == a * n && w.b[last] == b * n {
                    w.dims[last] *= size;
                    w.dst[last] = d;
                    w.a[last] = a;
                    w.b[last] = b;
                    continue;
                }
            }
            w.dims.push(size);
            w.dst.push(d);
            w.a.push(a);
            w.b.push(b);
        }
        if w.dims.is_empty() {
            w.dims.push(1);
            w.dst.push(0);
            w.a.push(0);
            w.b.push(0);
        }
        w
    }
}

/// A [`Map`] as the kernels walk it for one batch size (see [`Map::walk`]).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Walk {
    pub dims: Vec<usize>,
    pub dst: Vec<i64>,
    pub a: Vec<i64>,
    pub b: Vec<i64>,
}

impl Walk {
    /// The same walk in units of `width` consecutive elements, when the innermost dimension is
    /// contiguous in the output and in `a`, and every stride and both offsets (`dst_offset`,
    /// `a_offset`) are multiples of `width`: a copy then moves `width` elements (16 bytes) per
    /// index. Returns the walk and the two offsets in those units.
    pub fn vectorised(
        &self,
        width: usize,
        dst_offset: i64,
        a_offset: i64,
    ) -> Option<(Walk, i64, i64)> {
        let w = width as i64;
        let last = self.dims.len().checked_sub(1)?;
        let aligned = |v: &[i64]| v.iter().all(|s| s % w == 0);
        let inner_ok =
            self.dst[last] == 1 && self.a[last] == 1 && self.dims[last].is_multiple_of(width);
        let outer_ok = aligned(&self.dst[..last]) && aligned(&self.a[..last]);
        if width < 2 || !inner_ok || !outer_ok || dst_offset % w != 0 || a_offset % w != 0 {
            return None;
        }
        let mut v = self.clone();
        v.dims[last] /= width;
        for k in 0..last {
            v.dst[k] /= w;
            v.a[k] /= w;
        }
        v.b.iter_mut().for_each(|s| *s = 0);
        Some((v, dst_offset / w, a_offset / w))
    }
}

/// Constant padding: `map.dims`/`map.dst` describe the output, `map.a` the input's strides,
/// `src_dims` its extent and `begin` the leading pad per dimension.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PadMap {
    pub map: Map,
    pub src_dims: Vec<usize>,
    pub begin: Vec<usize>,
}

/// A reduction (or softmax) index map: every index of `kept` selects one group, whose elements are
/// the indices of `reduced`. Strides are for the input (`*_src`) and the output (`*_dst`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ReduceMap {
    pub kept: Vec<usize>,
    pub kept_src: Vec<i64>,
    pub kept_dst: Vec<i64>,
    pub reduced: Vec<usize>,
    pub reduced_src: Vec<i64>,
    pub reduced_dst: Vec<i64>,
}

impl ReduceMap {
    pub fn groups(&self, batch: usize) -> usize {
        self.kept.iter().skip(1).product::<usize>() * batch
    }

    pub fn group_len(&self) -> usize {
        self.reduced.iter().product()
    }
}

/// 2-D convolution geometry (NHWC data, KRSC filters, symmetric padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeom {
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub pad: [usize; 2],
    /// Spatial size of the convolution's input (for a transposed convolution: of its input too).
    pub input: [usize; 2],
    pub output: [usize; 2],
}

impl ConvGeom {
    /// Multiply-adds per image.
    pub fn macs(&self) -> u64 {
        let per_output = (self.in_channels / self.groups.max(1)) * self.kernel[0] * self.kernel[1];
        (self.output[0] * self.output[1] * self.out_channels * per_output) as u64
    }
}

/// Where a fused residual add sits relative to the activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Residual {
    None,
    BeforeActivation,
    AfterActivation,
}

/// What the build chose for one convolution on this GPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvChoice {
    /// cuDNN algorithm number (forward, or backward-data for a transposed convolution).
    pub algo: u32,
    /// cuDNN math type number.
    pub math: u32,
    /// Bias, activation and residual inside `cudnnConvolutionBiasActivationForward`; otherwise the
    /// convolution is followed by the epilogue kernel.
    pub fused: bool,
    /// The fused call takes the bias in the activation type (else FP32).
    pub bias_half: bool,
    /// Workspace bytes at the build's largest batch.
    pub workspace: u64,
    /// Measured time of the chosen variant at the largest batch (microseconds).
    pub time_us: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGeom {
    pub max: bool,
    pub count_include_pad: bool,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub pad_begin: [usize; 2],
    pub pad_end: [usize; 2],
    pub input: [usize; 2],
    pub output: [usize; 2],
    pub channels: usize,
}

/// An operand of a binary step: an arena value or a constant in the weight blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Value(usize),
    Weight(WeightRef),
}

/// Graph input `input` (FP32, NCHW, `channels` × `height` × `width`) rearranged for a stride-2
/// convolution run as a stride-1 one (space to depth): `dst` is NHWC with pixel (b, c) holding
/// channel `(qy·2 + qx)·channels + ch` = input (ch, 2b + qy − shift\[0\], 2c + qx − shift\[1\]),
/// zero outside the image, and zero channels past `4·channels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceToDepthInput {
    pub input: usize,
    pub dst: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub shift: [usize; 2],
}

/// A fully connected layer through cuBLASLt: `dst[b, n] = act(Σ_k src[b, k]·w[n, k] + bias[n])`
/// for every image b, the bias and activation in the matmul's epilogue. `src` and `dst` are
/// row-major with `k` and `n` elements per image; the weights are `n × k` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmStep {
    pub node: String,
    pub src: usize,
    pub dst: usize,
    pub k: usize,
    pub n: usize,
    pub weights: WeightRef,
    /// In the activation type (the epilogue reads the bias in the output's type).
    pub bias: Option<WeightRef>,
    /// Identity or ReLU (the epilogues cuBLASLt has for this).
    pub activation: Unary,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Graph input `input` (FP32, NCHW, contiguous) into value `dst`.
    CastIn {
        input: usize,
        dst: usize,
        map: Map,
    },
    /// Graph input `input` (FP32, NCHW, `channels` × `hw`) into the NHWC value `dst`, whose
    /// channels past `channels` (padding that lets tensor cores take the first convolution) are
    /// written as zeros.
    CastInNhwc {
        input: usize,
        dst: usize,
        channels: usize,
        hw: usize,
    },
    /// A graph input rearranged for a stride-2 convolution run with stride 1 (space to depth).
    CastInSpaceToDepth(SpaceToDepthInput),
    Gemm(GemmStep),
    /// Value `src` into graph output `output` (FP32, NCHW, contiguous).
    CastOut {
        src: usize,
        output: usize,
        map: Map,
    },
    Copy {
        src: usize,
        dst: usize,
        map: Map,
    },
    Pad {
        src: usize,
        dst: usize,
        map: PadMap,
        value: f32,
    },
    Conv {
        node: String,
        src: usize,
        dst: usize,
        residual: Option<usize>,
        residual_mode: Residual,
        activation: Unary,
        geom: ConvGeom,
        weights: WeightRef,
        /// FP32 bias for the epilogue kernel.
        bias: Option<WeightRef>,
        /// The bias in the activation type, for the fused cuDNN call (FP16 programs).
        bias_half: Option<WeightRef>,
        choice: Option<ConvChoice>,
    },
    /// A transposed convolution as cuDNN's backward-data convolution, then bias and activation.
    ConvTranspose {
        node: String,
        src: usize,
        dst: usize,
        activation: Unary,
        geom: ConvGeom,
        weights: WeightRef,
        bias: Option<WeightRef>,
        choice: Option<ConvChoice>,
    },
    Pool {
        src: usize,
        dst: usize,
        geom: PoolGeom,
    },
    GlobalPool {
        src: usize,
        dst: usize,
        max: bool,
        hw: usize,
        channels: usize,
    },
    Unary {
        src: usize,
        dst: usize,
        f: Unary,
        map: Map,
    },
    Binary {
        a: Operand,
        b: Operand,
        dst: usize,
        op: i32,
        map: Map,
    },
    Reduce {
        src: usize,
        dst: usize,
        kind: i32,
        map: ReduceMap,
    },
    Softmax {
        src: usize,
        dst: usize,
        log: bool,
        map: ReduceMap,
    },
}

impl Step {
    /// The values the step touches, with whether it writes them.
    pub fn values(&self) -> Vec<(usize, bool)> {
        match self {
            Step::CastIn { dst, .. }
            | Step::CastInNhwc { dst, .. }
            | Step::CastInSpaceToDepth(SpaceToDepthInput { dst, .. }) => vec![(*dst, true)],
            Step::CastOut { src, .. } => vec![(*src, false)],
            Step::Copy { src, dst, .. }
            | Step::Pad { src, dst, .. }
            | Step::ConvTranspose { src, dst, .. }
            | Step::Pool { src, dst, .. }
            | Step::GlobalPool { src, dst, .. }
            | Step::Unary { src, dst, .. }
            | Step::Reduce { src, dst, .. }
            | Step::Softmax { src, dst, .. }
            | Step::Gemm(GemmStep { src, dst, .. }) => vec![(*src, false), (*dst, true)],
            Step::Conv {
                src, dst, residual, ..
            } => {
                let mut v = vec![(*src, false), (*dst, true)];
                v.extend(residual.map(|r| (r, false)));
                v
            }
            Step::Binary { a, b, dst, .. } => {
                let mut v: Vec<(usize, bool)> = [a, b]
                    .into_iter()
                    .filter_map(|o| match o {
                        Operand::Value(id) => Some((*id, false)),
                        Operand::Weight(_) => None,
                    })
                    .collect();
                v.push((*dst, true));
                v
            }
        }
    }

    /// One line for listings: kind, node or output value, and the choice made for convolutions.
    pub fn describe(&self, values: &[Value]) -> String {
        let name = |v: &usize| values.get(*v).map_or("?", |v| v.name.as_str());
        match self {
            Step::CastIn { input, dst, .. } | Step::CastInNhwc { input, dst, .. } => {
                format!("cast-in #{input} -> {}", name(dst))
            }
            Step::CastInSpaceToDepth(SpaceToDepthInput { input, dst, .. }) => {
                format!("cast-in-space-to-depth #{input} -> {}", name(dst))
            }
            Step::CastOut { src, output, .. } => format!("cast-out {} -> #{output}", name(src)),
            Step::Copy { src, dst, .. } => format!("copy {} -> {}", name(src), name(dst)),
            Step::Pad { dst, .. } => format!("pad -> {}", name(dst)),
            Step::Conv {
                node,
                dst,
                residual,
                residual_mode,
                activation,
                choice,
                ..
            } => {
                let mut s = format!("conv {node} -> {}", name(dst));
                if activation.code != unary::IDENTITY {
                    s += &format!(" +act{}", activation.code);
                }
                if let Some(r) = residual {
                    s += &format!(" +residual({}, {residual_mode:?})", name(r));
                }
                if let Some(c) = choice {
                    s += &format!(
                        " [algo {} math {}{}]",
                        c.algo,
                        c.math,
                        if c.fused { " fused" } else { "" }
                    );
                }
                s
            }
            Step::ConvTranspose { node, dst, .. } => {
                format!("conv-transpose {node} -> {}", name(dst))
            }
            Step::Pool { dst, geom, .. } => format!(
                "{}pool -> {}",
                if geom.max { "max" } else { "avg" },
                name(dst)
            ),
            Step::GlobalPool { dst, .. } => format!("global-pool -> {}", name(dst)),
            Step::Unary { dst, f, .. } => format!("unary{} -> {}", f.code, name(dst)),
            Step::Binary { dst, op, .. } => format!("binary{op} -> {}", name(dst)),
            Step::Reduce { dst, kind, .. } => format!("reduce{kind} -> {}", name(dst)),
            Step::Softmax { dst, .. } => format!("softmax -> {}", name(dst)),
            Step::Gemm(g) => {
                let act = if g.activation.code == unary::IDENTITY {
                    String::new()
                } else {
                    format!(" +act{}", g.activation.code)
                };
                format!("gemm {} -> {}{act}", g.node, name(&g.dst))
            }
        }
    }
}

/// A whole program: values, steps in order, the graph's inputs and outputs, the arena size for
/// `max_batch` images and the weight blob (FP32 or FP16 as each [`WeightRef`] says).
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub dtype: DType,
    pub max_batch: usize,
    pub values: Vec<Value>,
    pub steps: Vec<Step>,
    pub inputs: Vec<IoDesc>,
    pub outputs: Vec<IoDesc>,
    pub arena_bytes: usize,
    pub weights: Vec<u8>,
}

impl Program {
    /// One line per step.
    pub fn listing(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| s.describe(&self.values))
            .collect()
    }

    /// Reads `r.len` weights as f32 (FP16 ones widened). `None` when the reference is out of range.
    pub fn weight_f32(&self, r: &WeightRef) -> Option<Vec<f32>> {
        let bytes = self
            .weights
            .get(r.offset..r.offset.checked_add(r.len.checked_mul(r.dtype.size())?)?)?;
        Some(match r.dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }

    /// Convolution multiply-adds per image.
    pub fn macs_per_image(&self) -> u64 {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Conv { geom, .. } | Step::ConvTranspose { geom, .. } => geom.macs(),
                _ => 0,
            })
            .sum()
    }
}
