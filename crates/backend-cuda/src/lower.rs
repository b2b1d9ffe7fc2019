//! Lowering an optimised graph into a GPU [`Program`]: convolutions (with bias, activation and a
//! residual add fused) on NHWC values, everything else as index-map kernels that read any layout,
//! and one arena placed by liveness. An op the GPU path has no kernel for fails the build with the
//! node and op named; nothing falls back silently.

use std::collections::{HashMap, HashSet};

use tao_engine::arena::Liveness;
use tao_engine::backend::{EngineError, EngineResult, IoDesc};
use tao_graph::ir::{BinaryOp, DType as GraphDType, Facts, Graph, Node, Op, Tensor, UnaryOp};
use tao_graph::ops::conv::WindowGeometry;
use tao_graph::ops::{AutoPad, PadMode, PoolKind, ReduceKind, VariadicOp};

use crate::program::{
    ALIGN, ConvGeom, DType, GemmStep, Layout, MAX_RANK, Map, Operand, PadMap, PoolGeom, Program,
    ReduceMap, Residual, SpaceToDepthInput, Step, Unary, Value, WeightRef, binary, reduce,
    row_major_strides, unary,
};

fn node_error(node: &Node, detail: impl Into<String>) -> EngineError {
    EngineError::Node {
        node: node.name.clone(),
        op: node.op_type().to_owned(),
        detail: detail.into(),
    }
}

fn unsupported(node: &Node, why: &str) -> EngineError {
    node_error(
        node,
        format!(
            "the CUDA backend has no GPU kernel for this {why}; build this model with the CPU backend"
        ),
    )
}

/// Appends weights to the blob, each aligned to [`ALIGN`].
#[derive(Default)]
struct Blob {
    bytes: Vec<u8>,
}

impl Blob {
    fn push(&mut self, values: &[f32], dtype: DType) -> WeightRef {
        let offset = self.bytes.len().next_multiple_of(ALIGN);
        self.bytes.resize(offset, 0);
        match dtype {
            DType::F32 => {
                for v in values {
                    self.bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            DType::F16 => {
                for v in values {
                    self.bytes
                        .extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                }
            }
        }
        WeightRef {
            offset,
            len: values.len(),
            dtype,
        }
    }
}

/// OIHW filters to KRSC (the NHWC filter layout cuDNN takes with NHWC tensors).
pub fn oihw_to_krsc(w: &[f32], k: usize, c: usize, r: usize, s: usize) -> Vec<f32> {
    oihw_to_krsc_padded(w, k, c, r, s, c)
}

/// As [`oihw_to_krsc`], with zero filters for input channels `c..c_padded`.
pub fn oihw_to_krsc_padded(
    w: &[f32],
    k: usize,
    c: usize,
    r: usize,
    s: usize,
    c_padded: usize,
) -> Vec<f32> {
    place_oihw(w, [k, c, r, s], [r, s, c_padded], |ci, ri, si| (ri, si, ci))
}

/// OIHW filters `[k, c, r, s]` into zeroed KRSC filters of `out` = [R, S, C] per output channel,
/// tap (ci, ri, si) going to the (row, column, channel) that `place` gives.
fn place_oihw(
    w: &[f32],
    [k, c, r, s]: [usize; 4],
    [out_r, out_s, out_c]: [usize; 3],
    place: impl Fn(usize, usize, usize) -> (usize, usize, usize),
) -> Vec<f32> {
    let mut out = vec![0f32; k * out_r * out_s * out_c];
    for ki in 0..k {
        for ci in 0..c {
            for ri in 0..r {
                for si in 0..s {
                    let (ro, so, co) = place(ci, ri, si);
                    out[((ki * out_r + ro) * out_s + so) * out_c + co] =
                        w[((ki * c + ci) * r + ri) * s + si];
                }
            }
        }
    }
    out
}

/// The window of a 2-D convolution with `auto_pad` resolved for an input of `spatial` size.
fn window(
    node: &Node,
    conv: &tao_graph::ops::Conv,
    kernel: [usize; 2],
    spatial: &[usize],
) -> EngineResult<WindowGeometry> {
    let mut geom = WindowGeometry::new(&kernel, &conv.strides, &conv.dilations, &conv.pads)
        .map_err(|e| node_error(node, e.to_string()))?;
    if conv.auto_pad != AutoPad::NotSet {
        geom.resolve_auto_pad(conv.auto_pad, spatial);
    }
    Ok(geom)
}

/// A stride-2 convolution run as a stride-1 convolution on a space-to-depth input: each 2×2 block
/// of pixels becomes one pixel of 4× the channels and the kernel halves (7×7 on 3 channels becomes
/// 4×4 on 12, padded to 16), so tensor cores take a network's first convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceToDepth {
    /// Kernel of the stride-1 convolution: ⌈k/2⌉ per axis.
    pub kernel: [usize; 2],
    /// Its symmetric padding.
    pub pad: [usize; 2],
    /// Rows and columns of the rearranged input.
    pub rows: [usize; 2],
    /// 1 where rearranged pixel b starts at input row (column) 2b − 1: odd leading padding.
    pub shift: [usize; 2],
}

impl SpaceToDepth {
    /// The rewrite of a stride-2, dilation-1 convolution with `kernel` and leading padding
    /// `pad_begin` from `input` to `output` pixels, or `None` where it would not be exact.
    ///
    /// Output row y reads input rows 2y + ky − p. With p = 2t + shift and ky = 2a + qy, that is
    /// row 2(y − t + a) + qy − shift: rearranged row b = y − t + a, sub-row qy. A stride-1
    /// convolution with kernel ⌈k/2⌉ and padding t reads exactly those rows.
    pub fn plan(
        kernel: [usize; 2],
        pad_begin: [usize; 2],
        input: [usize; 2],
        output: [usize; 2],
    ) -> Option<SpaceToDepth> {
        let mut s2d = SpaceToDepth {
            kernel: [0; 2],
            pad: [0; 2],
            rows: [0; 2],
            shift: [0; 2],
        };
        for a in 0..2 {
            let shift = pad_begin[a] % 2;
            let pad = pad_begin[a] / 2;
            let k = kernel[a].div_ceil(2);
            let rows = (output[a] + k).checked_sub(1 + 2 * pad)?;
            // Rearranged rows read as trailing padding must lie past the input's end.
            if rows == 0 || 2 * rows - shift < input[a] || output[a] == 0 {
                return None;
            }
            s2d.kernel[a] = k;
            s2d.pad[a] = pad;
            s2d.rows[a] = rows;
            s2d.shift[a] = shift;
        }
        Some(s2d)
    }

    /// OIHW filters (`oihw` = [k, c, r, s]) of the stride-2 convolution as KRSC filters of the
    /// stride-1 one with `c_padded` >= 4c channels, ordered as [`Step::CastInSpaceToDepth`] writes
    /// them.
    pub fn weights(&self, w: &[f32], oihw: [usize; 4], c_padded: usize) -> Vec<f32> {
        let c = oihw[1];
        let [kr, ks] = self.kernel;
        // Tap (ry, rx) = (2a + qy, 2b + qx) moves to tap (a, b), channel (qy·2 + qx)·c + ci.
        place_oihw(w, oihw, [kr, ks, c_padded], |ci, ri, si| {
            (ri / 2, si / 2, ((ri % 2) * 2 + si % 2) * c + ci)
        })
    }
}

struct Lowering<'g> {
    graph: &'g Graph,
    facts: Facts,
    dtype: DType,
    values: Vec<Value>,
    steps: Vec<Step>,
    by_name: HashMap<(String, Layout), usize>,
    fused: HashSet<usize>,
    blob: Blob,
    /// Convolutions (node index) that read a space-to-depth input value.
    space_to_depth: HashMap<usize, (usize, SpaceToDepth)>,
}

/// Lowers `graph` (optimised: BatchNorm folded, constants folded) for `dtype` activations and up to
/// `max_batch` images. Inputs must have fixed per-image shapes; the batch dimension may be symbolic.
pub fn lower(graph: &Graph, dtype: DType, max_batch: usize) -> EngineResult<Program> {
    let max_batch = max_batch.max(1);
    let shapes = input_shapes(graph)?;
    let facts = facts_at(graph, &shapes, 1)?;
    check_batch_major(graph, &facts, &facts_at(graph, &shapes, 2)?)?;
    let mut l = Lowering {
        graph,
        facts,
        dtype,
        values: Vec::new(),
        steps: Vec::new(),
        by_name: HashMap::new(),
        fused: HashSet::new(),
        blob: Blob::default(),
        space_to_depth: HashMap::new(),
    };
    let mut inputs = Vec::new();
    for (i, (name, dims)) in shapes.iter().enumerate() {
        if let Some((conv, s2d)) = l.space_to_depth_reader(name, dims) {
            let channels = dims[1];
            let padded = match l.dtype {
                DType::F16 => (4 * channels).next_multiple_of(8),
                DType::F32 => 4 * channels,
            };
            let dst = l.new_value(
                &format!("{name}/space-to-depth"),
                vec![1, padded, s2d.rows[0], s2d.rows[1]],
                Layout::Nhwc,
            );
            l.steps.push(Step::CastInSpaceToDepth(SpaceToDepthInput {
                input: i,
                dst,
                channels,
                height: dims[2],
                width: dims[3],
                shift: s2d.shift,
            }));
            l.space_to_depth.insert(conv, (dst, s2d));
        } else if dims.len() == 4 && l.wants_nhwc(name) {
            // Straight into NHWC; FP16 tensor cores want channels in multiples of 8, so an input
            // read only by ordinary convolutions gets zero channels up to that.
            let channels = dims[1];
            let padded = if l.dtype == DType::F16 && l.only_plain_convs_read(name) {
                channels.next_multiple_of(8)
            } else {
                channels
            };
            let dst = l.new_value(name, vec![1, padded, dims[2], dims[3]], Layout::Nhwc);
            l.steps.push(Step::CastInNhwc {
                input: i,
                dst,
                channels,
                hw: dims[2] * dims[3],
            });
        } else {
            let dst = l.new_value(name, dims.clone(), Layout::RowMajor);
            let map = Map {
                dims: dims.clone(),
                dst: l.values[dst].strides(),
                a: row_major_strides(dims),
                ..Map::default()
            };
            l.steps.push(Step::CastIn { input: i, dst, map });
        }
        inputs.push(IoDesc {
            name: name.clone(),
            shape: dims[1..].to_vec(),
        });
    }
    for i in 0..graph.nodes.len() {
        if !l.fused.contains(&i) {
            l.lower_node(i)?;
        }
    }
    let mut outputs = Vec::new();
    for (o, name) in graph.outputs.iter().enumerate() {
        if graph.constants.contains_key(name) {
            return Err(EngineError::Invalid(format!(
                "graph output `{name}` is a constant; the CUDA backend computes outputs only"
            )));
        }
        let src = l.any_value(name)?;
        let shape = l.values[src].shape.clone();
        let map = Map {
            dims: shape.clone(),
            dst: row_major_strides(&shape),
            a: l.values[src].strides(),
            ..Map::default()
        };
        l.steps.push(Step::CastOut {
            src,
            output: o,
            map,
        });
        outputs.push(IoDesc {
            name: name.clone(),
            shape: shape[1..].to_vec(),
        });
    }
    let arena_bytes = assign_offsets(&mut l.values, &l.steps, dtype, max_batch);
    Ok(Program {
        dtype,
        max_batch,
        values: l.values,
        steps: l.steps,
        inputs,
        outputs,
        arena_bytes,
        weights: l.blob.bytes,
    })
}

/// Multiply-adds per image of the graph's own convolutions (what throughput figures count; a
/// program may do more, e.g. zero channels or a space-to-depth kernel's zero taps).
pub fn model_macs_per_image(graph: &Graph) -> EngineResult<u64> {
    let facts = facts_at(graph, &input_shapes(graph)?, 1)?;
    let elements = |name: Option<&str>| {
        name.and_then(|n| facts.get(n))
            .and_then(|f| f.shape.to_fixed())
            .map(|s| s.iter().product::<usize>() as u64)
    };
    let mut macs = 0u64;
    for node in &graph.nodes {
        let weights = node.input(1).and_then(|w| graph.constants.get(w));
        let per = weights.map(|w| w.shape().iter().skip(1).product::<usize>() as u64);
        macs += match &node.op {
            // Each output element takes C/group × kh × kw products.
            Op::Conv(_) => elements(node.outputs.first().map(String::as_str)).zip(per),
            // Each input element is spread over M/group × kh × kw outputs.
            Op::ConvTranspose(_) => elements(node.input(0)).zip(per),
            _ => None,
        }
        .map_or(0, |(n, k)| n * k);
    }
    Ok(macs)
}

/// Per-image input shapes with batch 1.
fn input_shapes(graph: &Graph) -> EngineResult<Vec<(String, Vec<usize>)>> {
    let mut shapes = Vec::new();
    for input in &graph.inputs {
        let mut dims = Vec::new();
        for (i, d) in input.shape.dims().iter().enumerate() {
            match d.fixed() {
                Some(_) if i == 0 => dims.push(1),
                Some(v) => dims.push(v),
                None if i == 0 => dims.push(1),
                None => {
                    return Err(EngineError::Invalid(format!(
                        "input `{}` dimension {i} is not fixed: give the input dims (e.g. -d 3,544,960)",
                        input.name
                    )));
                }
            }
        }
        if dims.is_empty() || dims.len() > MAX_RANK {
            return Err(EngineError::Invalid(format!(
                "input `{}` has rank {}; the CUDA backend takes ranks 1 to {MAX_RANK} with the batch first",
                input.name,
                dims.len()
            )));
        }
        if input.dtype != GraphDType::F32 {
            return Err(EngineError::Invalid(format!(
                "input `{}` is {:?}; the CUDA backend takes float inputs",
                input.name, input.dtype
            )));
        }
        shapes.push((input.name.clone(), dims));
    }
    Ok(shapes)
}

fn facts_at(graph: &Graph, shapes: &[(String, Vec<usize>)], batch: usize) -> EngineResult<Facts> {
    let owned: Vec<(String, Vec<usize>)> = shapes
        .iter()
        .map(|(n, d)| {
            let mut d = d.clone();
            d[0] = batch;
            (n.clone(), d)
        })
        .collect();
    let refs: Vec<(&str, &[usize])> = owned
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    Ok(graph.infer_with_input_shapes(&refs)?)
}

/// Every computed tensor must keep images apart: dimension 0 is the batch, the rest does not depend
/// on it. Checked by inferring shapes at batch 1 and 2.
fn check_batch_major(graph: &Graph, one: &Facts, two: &Facts) -> EngineResult<()> {
    for node in &graph.nodes {
        for out in &node.outputs {
            let (Some(a), Some(b)) = (one.get(out), two.get(out)) else {
                return Err(node_error(node, format!("no shape known for `{out}`")));
            };
            let (Some(a), Some(b)) = (a.shape.to_fixed(), b.shape.to_fixed()) else {
                return Err(node_error(node, format!("`{out}` has no fixed shape")));
            };
            let batch_major =
                !a.is_empty() && a.len() == b.len() && a[0] == 1 && b[0] == 2 && a[1..] == b[1..];
            if !batch_major {
                return Err(node_error(
                    node,
                    format!(
                        "`{out}` has shape {a:?} at batch 1 and {b:?} at batch 2: the CUDA backend \
                         runs graphs whose tensors keep the batch as their first dimension"
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Lowering<'_> {
    fn new_value(&mut self, name: &str, shape: Vec<usize>, layout: Layout) -> usize {
        let layout = if shape.len() == 4 {
            layout
        } else {
            Layout::RowMajor
        };
        let id = self.values.len();
        self.values.push(Value {
            name: name.to_owned(),
            shape,
            layout,
            offset: 0,
        });
        self.by_name.insert((name.to_owned(), layout), id);
        id
    }

    fn shape_of(&self, name: &str) -> EngineResult<Vec<usize>> {
        self.facts
            .get(name)
            .and_then(|f| f.shape.to_fixed())
            .ok_or_else(|| EngineError::Invalid(format!("tensor `{name}` has no fixed shape")))
    }

    fn is_float(&self, name: &str) -> bool {
        self.facts
            .get(name)
            .is_some_and(|f| f.dtype == GraphDType::F32)
    }

    /// The value already computed for `name`, in whichever layout it has.
    fn any_value(&self, name: &str) -> EngineResult<usize> {
        [Layout::Nhwc, Layout::RowMajor]
            .iter()
            .find_map(|l| self.by_name.get(&(name.to_owned(), *l)).copied())
            .ok_or_else(|| {
                EngineError::Invalid(format!("tensor `{name}` is used before it is computed"))
            })
    }

    /// The value for `name` in `layout`, converting with a copy step when it exists in the other.
    fn value_in(&mut self, name: &str, layout: Layout) -> EngineResult<usize> {
        if let Some(&id) = self.by_name.get(&(name.to_owned(), layout)) {
            return Ok(id);
        }
        let src = self.any_value(name)?;
        let shape = self.values[src].shape.clone();
        if shape.len() != 4 {
            return Ok(src);
        }
        let dst = self.new_value(name, shape.clone(), layout);
        let map = Map {
            dims: shape,
            dst: self.values[dst].strides(),
            a: self.values[src].strides(),
            ..Map::default()
        };
        self.steps.push(Step::Copy { src, dst, map });
        Ok(dst)
    }

    fn constant(&self, name: Option<&str>) -> Option<&Tensor> {
        name.and_then(|n| self.graph.constants.get(n))
    }

    /// Graph inputs read only by ops that want NHWC are converted straight into NHWC.
    fn wants_nhwc(&self, name: &str) -> bool {
        let readers = self.graph.consumers(name);
        !readers.is_empty()
            && readers.iter().all(|&r| {
                matches!(
                    self.graph.nodes[r].op,
                    Op::Conv(_) | Op::ConvTranspose(_) | Op::Pool(_) | Op::GlobalPool(_)
                ) && self.graph.nodes[r].input(0) == Some(name)
            })
    }

    /// The convolution that is the only reader of graph input `name` (shape `dims`), when it is a
    /// stride-2 convolution with a kernel of 5 or more on at most 4 channels: then it runs as a
    /// stride-1 convolution on a space-to-depth input (for smaller kernels the rewrite costs
    /// more multiply-adds than tensor cores win back).
    fn space_to_depth_reader(&self, name: &str, dims: &[usize]) -> Option<(usize, SpaceToDepth)> {
        if dims.len() != 4 || dims[1] > 4 || !self.only_plain_convs_read(name) {
            return None;
        }
        let &[r] = self.graph.consumers(name).as_slice() else {
            return None;
        };
        let node = &self.graph.nodes[r];
        let Op::Conv(conv) = &node.op else {
            return None;
        };
        let w = self.constant(node.input(1)).filter(|w| w.rank() == 4)?;
        let [kh, kw] = [w.shape()[2], w.shape()[3]];
        let geom = window(node, conv, [kh, kw], &dims[2..]).ok()?;
        let ys = self.shape_of(node.outputs.first()?).ok()?;
        let fits = kh >= 5
            && kw >= 5
            && w.shape()[1] == dims[1]
            && geom.strides == [2, 2]
            && geom.dilations == [1, 1]
            && ys.len() == 4;
        if !fits {
            return None;
        }
        let s2d = SpaceToDepth::plan(
            [kh, kw],
            [geom.pads_begin[0], geom.pads_begin[1]],
            [dims[2], dims[3]],
            [ys[2], ys[3]],
        )?;
        Some((r, s2d))
    }

    /// Whether `name` is read only as the data input of ungrouped convolutions and is not an output
    /// (then extra zero channels, with zero weights, change nothing).
    fn only_plain_convs_read(&self, name: &str) -> bool {
        let readers = self.graph.consumers(name);
        !self.graph.outputs.iter().any(|o| o == name)
            && !readers.is_empty()
            && readers.iter().all(|&r| {
                let node = &self.graph.nodes[r];
                matches!(&node.op, Op::Conv(c) if c.group <= 1)
                    && node.input(0) == Some(name)
                    && node
                        .inputs
                        .iter()
                        .skip(1)
                        .all(|i| i.as_deref() != Some(name))
            })
    }

    fn scalar_constant(&self, node: &Node, i: usize) -> Option<Option<f32>> {
        match node.input(i) {
            None => Some(None),
            Some(n) => self
                .graph
                .constants
                .get(n)
                .filter(|t| t.len() == 1)
                .map(|t| Some(t.to_f32_vec()[0])),
        }
    }

    /// The element-wise function of a one-input node (activations, maths), if it has a kernel.
    fn unary_of(&self, node: &Node) -> Option<Unary> {
        use unary::*;
        Some(match &node.op {
            Op::Unary(op) => match op {
                UnaryOp::Relu => Unary::new(RELU),
                UnaryOp::Sigmoid => Unary::new(SIGMOID),
                UnaryOp::Tanh => Unary::new(TANH),
                UnaryOp::Exp => Unary::new(EXP),
                UnaryOp::Log => Unary::new(LOG),
                UnaryOp::Sqrt => Unary::new(SQRT),
                UnaryOp::Reciprocal => Unary::new(RECIPROCAL),
                UnaryOp::Neg => Unary::new(NEG),
                UnaryOp::Abs => Unary::new(ABS),
                UnaryOp::Softplus => Unary::new(SOFTPLUS),
                UnaryOp::Softsign => Unary::new(SOFTSIGN),
                UnaryOp::Floor => Unary::new(FLOOR),
                UnaryOp::Ceil => Unary::new(CEIL),
                UnaryOp::Round => Unary::new(ROUND),
                UnaryOp::Sign => Unary::new(SIGN),
                UnaryOp::Sin => Unary::new(SIN),
                UnaryOp::Cos => Unary::new(COS),
                UnaryOp::Erf => Unary::new(ERF),
                UnaryOp::LeakyRelu { alpha } => Unary::with(LEAKY_RELU, *alpha, 0.0),
                UnaryOp::Elu { alpha } => Unary::with(ELU, *alpha, 0.0),
                UnaryOp::Selu { alpha, gamma } => Unary::with(SELU, *alpha, *gamma),
                UnaryOp::HardSigmoid { alpha, beta } => Unary::with(HARD_SIGMOID, *alpha, *beta),
                UnaryOp::HardSwish => Unary::new(HARD_SWISH),
                _ => return None,
            },
            Op::Clip => {
                let min = self.scalar_constant(node, 1)?.unwrap_or(f32::NEG_INFINITY);
                let max = self.scalar_constant(node, 2)?.unwrap_or(f32::INFINITY);
                if min == 0.0 && max == f32::INFINITY {
                    Unary::new(RELU)
                } else {
                    Unary::with(CLIP, min, max)
                }
            }
            _ => return None,
        })
    }

    /// Activations a convolution epilogue takes.
    fn activation_of(&self, node: &Node) -> Option<Unary> {
        let f = self.unary_of(node)?;
        matches!(
            f.code,
            unary::RELU | unary::CLIP | unary::SIGMOID | unary::TANH | unary::LEAKY_RELU
        )
        .then_some(f)
    }

    fn residual_partner(&self, add: &Node, tensor: &str) -> Option<String> {
        let other = self.graph.other_add_operand(add, tensor)?;
        let computed = self.any_value(other).is_ok();
        let same = self.shape_of(other).ok()? == self.shape_of(tensor).ok()?;
        (computed && same).then(|| other.to_owned())
    }

    fn lower_node(&mut self, i: usize) -> EngineResult<()> {
        let graph = self.graph;
        let node = &graph.nodes[i];
        for out in &node.outputs {
            if !self.is_float(out) {
                return Err(unsupported(node, "non-float output"));
            }
        }
        for input in node.present_inputs() {
            if !self.graph.constants.contains_key(input) && !self.is_float(input) {
                return Err(unsupported(node, "non-float input"));
            }
        }
        match &node.op {
            Op::Conv(conv) => self.lower_conv(i, conv),
            Op::ConvTranspose(ct) => self.lower_conv_transpose(i, ct),
            Op::Pool(p) => self.lower_pool(node, p),
            Op::GlobalPool(kind) => {
                let (x, y) = (self.input_name(node, 0)?, node.outputs[0].clone());
                let xs = self.shape_of(&x)?;
                if xs.len() != 4 {
                    return Err(unsupported(node, "global pooling of a non-4-D tensor"));
                }
                let src = self.value_in(&x, Layout::Nhwc)?;
                let dst = self.new_value(&y, self.shape_of(&y)?, Layout::Nhwc);
                self.steps.push(Step::GlobalPool {
                    src,
                    dst,
                    max: *kind == PoolKind::Max,
                    hw: xs[2] * xs[3],
                    channels: xs[1],
                });
                Ok(())
            }
            Op::Unary(_) | Op::Clip => {
                let f = self
                    .unary_of(node)
                    .ok_or_else(|| unsupported(node, "element-wise function"))?;
                self.lower_unary(node, f)
            }
            Op::Identity => self.lower_unary(node, Unary::IDENTITY),
            Op::Binary(op) => {
                let code = match op {
                    BinaryOp::Add => binary::ADD,
                    BinaryOp::Sub => binary::SUB,
                    BinaryOp::Mul => binary::MUL,
                    BinaryOp::Div => binary::DIV,
                    BinaryOp::Pow => binary::POW,
                    _ => return Err(unsupported(node, "binary function")),
                };
                self.lower_binary(node, code)
            }
            Op::PRelu => self.lower_binary(node, binary::PRELU),
            Op::Variadic(op) => {
                let n = node.present_inputs().count();
                match (op, n) {
                    (_, 1) => self.lower_unary(node, Unary::IDENTITY),
                    (VariadicOp::Max, 2) => self.lower_binary(node, binary::MAX),
                    (VariadicOp::Min, 2) => self.lower_binary(node, binary::MIN),
                    (VariadicOp::Sum, 2) => self.lower_binary(node, binary::ADD),
                    _ => Err(unsupported(node, "variadic op with more than two inputs")),
                }
            }
            Op::Reduce(r) => self.lower_reduce(node, r),
            Op::Softmax(s) => self.lower_softmax(node, s),
            Op::Concat(c) => self.lower_concat(node, c.axis),
            Op::Slice => self.lower_slice(node),
            Op::Transpose(t) => {
                let x = self.input_name(node, 0)?;
                let rank = self.shape_of(&x)?.len();
                let perm = t
                    .permutation(rank)
                    .map_err(|e| node_error(node, e.to_string()))?;
                if perm.first() != Some(&0) {
                    return Err(unsupported(node, "transpose that moves the batch axis"));
                }
                let src = self.any_value(&x)?;
                let y = node.outputs[0].clone();
                let ys = self.shape_of(&y)?;
                let dst = self.new_value(&y, ys.clone(), Layout::RowMajor);
                let from = self.values[src].strides();
                let map = Map {
                    dims: ys.clone(),
                    dst: row_major_strides(&ys),
                    a: perm.iter().map(|&p| from[p]).collect(),
                    ..Map::default()
                };
                self.steps.push(Step::Copy { src, dst, map });
                Ok(())
            }
            Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze | Op::Unsqueeze => {
                self.lower_reshape(node)
            }
            Op::Pad(p) => self.lower_pad(node, p.mode),
            Op::Gemm(g) => self.lower_gemm(i, Some(g)),
            Op::MatMul => self.lower_gemm(i, None),
            _ => Err(unsupported(node, "op")),
        }
    }

    /// Gemm (or MatMul) of a 2-D activation `[batch, k]` by constant weights: one cuBLASLt
    /// matmul with alpha and beta·C folded into the weights and bias, and a following ReLU in its
    /// epilogue.
    fn lower_gemm(&mut self, i: usize, gemm: Option<&tao_graph::ops::Gemm>) -> EngineResult<()> {
        let graph = self.graph;
        let node = &graph.nodes[i];
        let g = gemm.copied().unwrap_or_default();
        let x = self.input_name(node, 0)?;
        let xs = self.shape_of(&x)?;
        let b = self
            .constant(node.input(1))
            .filter(|b| b.rank() == 2)
            .and_then(|b| Some((b.shape().to_vec(), b.as_f32()?)))
            .ok_or_else(|| {
                unsupported(node, "matrix product without constant 2-D float weights")
            })?;
        if xs.len() != 2 || g.trans_a || node.outputs.len() != 1 {
            return Err(unsupported(
                node,
                "matrix product of other than a [batch, k] activation",
            ));
        }
        let k = xs[1];
        let (rows, cols) = (b.0[0], b.0[1]);
        let n = if g.trans_b { rows } else { cols };
        if (if g.trans_b { cols } else { rows }) != k {
            return Err(node_error(
                node,
                format!("weights {:?} do not fit an input of {k} columns", b.0),
            ));
        }
        // Weights as [n, k] row-major, scaled by alpha.
        let mut w = vec![0f32; n * k];
        for ni in 0..n {
            for ki in 0..k {
                let v = if g.trans_b {
                    b.1[ni * k + ki]
                } else {
                    b.1[ki * n + ni]
                };
                w[ni * k + ki] = g.alpha * v;
            }
        }
        let bias = match node.input(2) {
            None => None,
            Some(_) => {
                let c = self
                    .constant(node.input(2))
                    .and_then(Tensor::as_f32)
                    .ok_or_else(|| unsupported(node, "matrix product with a computed C"))?;
                let per_column = match c.len() {
                    1 => vec![c[0]; n],
                    len if len == n => c.to_vec(),
                    _ => return Err(unsupported(node, "C that is not one value per column")),
                };
                Some(per_column.iter().map(|v| g.beta * v).collect::<Vec<f32>>())
            }
        };
        let mut out = node.outputs[0].clone();
        let mut activation = Unary::IDENTITY;
        if let Some(r) = self.graph.sole_consumer(&out)
            && self
                .unary_of(&graph.nodes[r])
                .is_some_and(|f| f.code == unary::RELU)
        {
            self.fused.insert(r);
            activation = Unary::new(unary::RELU);
            out = graph.nodes[r].outputs[0].clone();
        }
        let ys = self.shape_of(&out)?;
        if ys != [1, n] {
            return Err(node_error(
                node,
                format!("output shape {ys:?} is not [1, {n}]"),
            ));
        }
        let src = self.value_in(&x, Layout::RowMajor)?;
        let weights = self.blob.push(&w, self.dtype);
        let bias = bias.map(|b| self.blob.push(&b, self.dtype));
        let dst = self.new_value(&out, ys, Layout::RowMajor);
        self.steps.push(Step::Gemm(GemmStep {
            node: node.name.clone(),
            src,
            dst,
            k,
            n,
            weights,
            bias,
            activation,
        }));
        Ok(())
    }

    fn input_name(&self, node: &Node, i: usize) -> EngineResult<String> {
        node.input(i)
            .map(str::to_owned)
            .ok_or_else(|| node_error(node, format!("input {i} is missing")))
    }

    fn check_rank(&self, node: &Node, shape: &[usize]) -> EngineResult<()> {
        if shape.is_empty() || shape.len() > MAX_RANK {
            return Err(unsupported(
                node,
                &format!("tensor of rank {} (ranks 1 to {MAX_RANK} run)", shape.len()),
            ));
        }
        Ok(())
    }

    fn lower_conv(&mut self, i: usize, conv: &tao_graph::ops::Conv) -> EngineResult<()> {
        let graph = self.graph;
        let node = &graph.nodes[i];
        let x = self.input_name(node, 0)?;
        let xs = self.shape_of(&x)?;
        let w = node
            .input(1)
            .and_then(|n| graph.constants.get(n))
            .filter(|w| w.rank() == 4 && w.as_f32().is_some())
            .ok_or_else(|| unsupported(node, "convolution without constant 2-D float weights"))?;
        let bias = match node.input(2) {
            None => None,
            Some(_) => Some(
                node.input(2)
                    .and_then(|n| graph.constants.get(n))
                    .and_then(Tensor::as_f32)
                    .ok_or_else(|| unsupported(node, "convolution with a computed bias"))?
                    .to_vec(),
            ),
        };
        if xs.len() != 4 || node.outputs.len() != 1 {
            return Err(unsupported(node, "convolution that is not 2-D"));
        }
        let [m, cg, kh, kw] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
        let groups = conv.group.max(1);
        if cg * groups != xs[1] || !m.is_multiple_of(groups) {
            return Err(node_error(
                node,
                format!(
                    "weights {:?} with {groups} groups do not fit an input of {} channels",
                    w.shape(),
                    xs[1]
                ),
            ));
        }
        let geom = window(node, conv, [kh, kw], &xs[2..])?;

        // Fusion: conv → [Add residual] → [activation] → [Add residual], each link read only once.
        let mut out = node.outputs[0].clone();
        let mut activation = Unary::IDENTITY;
        let mut residual_mode = Residual::None;
        let mut residual = None;
        let try_residual = |this: &mut Self, out: &mut String, residual: &mut Option<String>| {
            if let Some(r) = this.graph.sole_consumer(out)
                && let Some(other) = this.residual_partner(&graph.nodes[r], out)
            {
                this.fused.insert(r);
                *out = graph.nodes[r].outputs[0].clone();
                *residual = Some(other);
                return true;
            }
            false
        };
        if try_residual(self, &mut out, &mut residual) {
            residual_mode = Residual::BeforeActivation;
        }
        if let Some(r) = self.graph.sole_consumer(&out)
            && let Some(act) = self.activation_of(&graph.nodes[r])
            && graph.nodes[r].input(0) == Some(out.as_str())
        {
            self.fused.insert(r);
            activation = act;
            out = graph.nodes[r].outputs[0].clone();
            if residual_mode == Residual::None && try_residual(self, &mut out, &mut residual) {
                residual_mode = Residual::AfterActivation;
            }
        }

        let s2d = self.space_to_depth.get(&i).copied();
        let mut src = match s2d {
            Some((value, _)) => value,
            None => self.value_in(&x, Layout::Nhwc)?,
        };
        // The value may carry zero channels past the tensor's (see `lower`).
        let cin = self.values[src].shape[1];
        let mut input_hw = [xs[2], xs[3]];
        let mut stride = [geom.strides[0], geom.strides[1]];
        let mut kernel = [kh, kw];
        let mut sym = [
            geom.pads_begin[0].min(geom.pads_end[0]),
            geom.pads_begin[1].min(geom.pads_end[1]),
        ];
        if let Some((_, s2d)) = s2d {
            // The rearranged input carries the stride and the asymmetric part of the padding.
            input_hw = s2d.rows;
            stride = [1, 1];
            kernel = s2d.kernel;
            sym = s2d.pad;
        }
        let no_pads = geom
            .pads_begin
            .iter()
            .chain(&geom.pads_end)
            .all(|&p| p == 0);
        if kh == 1 && kw == 1 && no_pads && stride != [1, 1] && s2d.is_none() {
            // A strided 1×1 convolution reads one pixel in stride²: gather those first (cuDNN's
            // strided 1×1 kernels are slow in NHWC), then a plain 1×1 convolution.
            input_hw = [(xs[2] - 1) / stride[0] + 1, (xs[3] - 1) / stride[1] + 1];
            let shape = vec![1, cin, input_hw[0], input_hw[1]];
            let sub = self.new_value(
                &format!("{x}/subsample-for/{}", node.name),
                shape.clone(),
                Layout::Nhwc,
            );
            let from = self.values[src].strides();
            let map = Map {
                dims: shape,
                dst: self.values[sub].strides(),
                a: vec![
                    from[0],
                    from[1],
                    from[2] * stride[0] as i64,
                    from[3] * stride[1] as i64,
                ],
                ..Map::default()
            };
            self.steps.push(Step::Copy { src, dst: sub, map });
            src = sub;
            stride = [1, 1];
        }
        // cuDNN pads symmetrically: the asymmetric part becomes an explicit zero-padding step.
        let extra_begin = [geom.pads_begin[0] - sym[0], geom.pads_begin[1] - sym[1]];
        let extra_end = [geom.pads_end[0] - sym[0], geom.pads_end[1] - sym[1]];
        if s2d.is_none() && extra_begin.iter().chain(&extra_end).any(|&e| e > 0) {
            let unpadded = self.values[src].shape.clone();
            input_hw = [
                input_hw[0] + extra_begin[0] + extra_end[0],
                input_hw[1] + extra_begin[1] + extra_end[1],
            ];
            let padded_shape = vec![1, cin, input_hw[0], input_hw[1]];
            let padded = self.new_value(
                &format!("{x}/pad-for/{}", node.name),
                padded_shape.clone(),
                Layout::Nhwc,
            );
            let map = PadMap {
                map: Map {
                    dims: padded_shape,
                    dst: self.values[padded].strides(),
                    a: self.values[src].strides(),
                    ..Map::default()
                },
                src_dims: unpadded,
                begin: vec![0, 0, extra_begin[0], extra_begin[1]],
            };
            self.steps.push(Step::Pad {
                src,
                dst: padded,
                map,
                value: 0.0,
            });
            src = padded;
        }
        let out_hw = |a: usize| {
            let k = geom.dilations[a] * (kernel[a] - 1) + 1;
            (input_hw[a] + 2 * sym[a])
                .checked_sub(k)
                .map(|v| v / stride[a] + 1)
        };
        let (Some(oh), Some(ow)) = (out_hw(0), out_hw(1)) else {
            return Err(node_error(
                node,
                "the kernel is larger than the padded input",
            ));
        };
        let ys = self.shape_of(&out)?;
        if ys != [1, m, oh, ow] {
            return Err(node_error(
                node,
                format!(
                    "output shape {ys:?} does not match the convolution's [1, {m}, {oh}, {ow}]"
                ),
            ));
        }
        let conv_geom = ConvGeom {
            in_channels: cin,
            out_channels: m,
            groups,
            kernel,
            stride,
            dilation: [geom.dilations[0], geom.dilations[1]],
            pad: sym,
            input: input_hw,
            output: [oh, ow],
        };
        let w = w.as_f32().unwrap_or_default();
        let krsc = match s2d {
            Some((_, s2d)) => s2d.weights(w, [m, cg, kh, kw], cin),
            None => oihw_to_krsc_padded(w, m, cg, kh, kw, cg + cin - xs[1]),
        };
        let weights = self.blob.push(&krsc, self.dtype);
        let bias_f32 = bias.as_deref().map(|b| self.blob.push(b, DType::F32));
        let bias_half = match (self.dtype, bias.as_deref()) {
            (DType::F16, Some(b)) => Some(self.blob.push(b, DType::F16)),
            _ => None,
        };
        let residual = match residual {
            Some(r) => Some(self.value_in(&r, Layout::Nhwc)?),
            None => None,
        };
        let dst = self.new_value(&out, ys, Layout::Nhwc);
        self.steps.push(Step::Conv {
            node: node.name.clone(),
            src,
            dst,
            residual,
            residual_mode,
            activation,
            geom: conv_geom,
            weights,
            bias: bias_f32,
            bias_half,
            choice: None,
        });
        Ok(())
    }

    fn lower_conv_transpose(
        &mut self,
        i: usize,
        ct: &tao_graph::ops::ConvTranspose,
    ) -> EngineResult<()> {
        let graph = self.graph;
        let node = &graph.nodes[i];
        let x = self.input_name(node, 0)?;
        let xs = self.shape_of(&x)?;
        let w = node
            .input(1)
            .and_then(|n| graph.constants.get(n))
            .filter(|w| w.rank() == 4 && w.as_f32().is_some())
            .ok_or_else(|| {
                unsupported(
                    node,
                    "transposed convolution without constant 2-D float weights",
                )
            })?;
        let bias = match node.input(2) {
            None => None,
            Some(_) => Some(
                node.input(2)
                    .and_then(|n| graph.constants.get(n))
                    .and_then(Tensor::as_f32)
                    .ok_or_else(|| {
                        unsupported(node, "transposed convolution with a computed bias")
                    })?
                    .to_vec(),
            ),
        };
        if xs.len() != 4 || node.outputs.len() != 1 {
            return Err(unsupported(node, "transposed convolution that is not 2-D"));
        }
        let [cin, cout_g, kh, kw] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
        let groups = ct.group.max(1);
        if cin != xs[1] || !cin.is_multiple_of(groups) {
            return Err(node_error(
                node,
                format!(
                    "weights {:?} do not fit an input of {} channels",
                    w.shape(),
                    xs[1]
                ),
            ));
        }
        let w_dims: Vec<tao_graph::ir::Dim> = w
            .shape()
            .iter()
            .map(|&d| tao_graph::ir::Dim::Fixed(d))
            .collect();
        let (geom, _) = ct
            .resolve(&w_dims, &xs[2..])
            .map_err(|e| node_error(node, e.to_string()))?;
        let mut out = node.outputs[0].clone();
        let ys_direct = self.shape_of(&out)?;
        let cout = cout_g * groups;
        if ys_direct.len() != 4 || ys_direct[1] != cout {
            return Err(node_error(
                node,
                format!("output shape {ys_direct:?} is not [1, {cout}, H, W]"),
            ));
        }
        // cuDNN's backward-data convolution takes one pad per axis; the output may run up to
        // stride-1 rows past what the forward convolution would cover (output_padding).
        let mut pad = [0usize; 2];
        for a in 0..2 {
            let k = geom.dilations[a] * (geom.kernel[a] - 1) + 1;
            let full = (xs[2 + a] - 1) * geom.strides[a] + k;
            // The forward convolution of the output must give back the input size.
            let extra = ys_direct[2 + a] as i64 + 2 * geom.pads_begin[a] as i64 - full as i64;
            if !(0..geom.strides[a] as i64).contains(&extra) {
                return Err(unsupported(
                    node,
                    "transposed convolution with these pads and output size",
                ));
            }
            pad[a] = geom.pads_begin[a];
        }
        let mut activation = Unary::IDENTITY;
        if let Some(r) = self.graph.sole_consumer(&out)
            && let Some(act) = self.activation_of(&graph.nodes[r])
            && graph.nodes[r].input(0) == Some(out.as_str())
        {
            self.fused.insert(r);
            activation = act;
            out = graph.nodes[r].outputs[0].clone();
        }
        let conv_geom = ConvGeom {
            in_channels: cout,
            out_channels: cin,
            groups,
            kernel: [kh, kw],
            stride: [geom.strides[0], geom.strides[1]],
            dilation: [geom.dilations[0], geom.dilations[1]],
            pad,
            input: [ys_direct[2], ys_direct[3]],
            output: [xs[2], xs[3]],
        };
        // IOHW is the forward convolution's OIHW with K = input channels.
        let weights = self.blob.push(
            &oihw_to_krsc(w.as_f32().unwrap_or_default(), cin, cout_g, kh, kw),
            self.dtype,
        );
        let bias = bias.as_deref().map(|b| self.blob.push(b, DType::F32));
        let src = self.value_in(&x, Layout::Nhwc)?;
        let dst = self.new_value(&out, ys_direct, Layout::Nhwc);
        self.steps.push(Step::ConvTranspose {
            node: node.name.clone(),
            src,
            dst,
            activation,
            geom: conv_geom,
            weights,
            bias,
            choice: None,
        });
        Ok(())
    }

    fn lower_pool(&mut self, node: &Node, p: &tao_graph::ops::Pool) -> EngineResult<()> {
        let x = self.input_name(node, 0)?;
        let xs = self.shape_of(&x)?;
        if xs.len() != 4 || node.outputs.len() != 1 {
            return Err(unsupported(
                node,
                "pooling that is not 2-D or returns indices",
            ));
        }
        let mut geom = p.geometry().map_err(|e| node_error(node, e.to_string()))?;
        if geom.kernel.len() != 2 {
            return Err(unsupported(node, "pooling that is not 2-D"));
        }
        if p.auto_pad != AutoPad::NotSet {
            geom.resolve_auto_pad(p.auto_pad, &xs[2..]);
        }
        let y = node.outputs[0].clone();
        let ys = self.shape_of(&y)?;
        for a in 0..2 {
            let want = geom
                .output_size(a, xs[2 + a], p.ceil_mode)
                .map_err(|e| node_error(node, e.to_string()))?;
            if want != ys[2 + a] {
                return Err(node_error(
                    node,
                    format!("output shape {ys:?} does not match the window"),
                ));
            }
        }
        let pool = PoolGeom {
            max: p.kind == PoolKind::Max,
            count_include_pad: p.count_include_pad,
            kernel: [geom.kernel[0], geom.kernel[1]],
            stride: [geom.strides[0], geom.strides[1]],
            dilation: [geom.dilations[0], geom.dilations[1]],
            pad_begin: [geom.pads_begin[0], geom.pads_begin[1]],
            pad_end: [geom.pads_end[0], geom.pads_end[1]],
            input: [xs[2], xs[3]],
            output: [ys[2], ys[3]],
            channels: xs[1],
        };
        let src = self.value_in(&x, Layout::Nhwc)?;
        let dst = self.new_value(&y, ys, Layout::Nhwc);
        self.steps.push(Step::Pool {
            src,
            dst,
            geom: pool,
        });
        Ok(())
    }

    fn lower_unary(&mut self, node: &Node, f: Unary) -> EngineResult<()> {
        let x = self.input_name(node, 0)?;
        if self.graph.constants.contains_key(&x) {
            return Err(unsupported(node, "op on a constant (fold constants first)"));
        }
        let y = node.outputs[0].clone();
        let src = self.any_value(&x)?;
        let shape = self.values[src].shape.clone();
        if self.shape_of(&y)? != shape {
            return Err(node_error(node, "output shape differs from the input's"));
        }
        self.check_rank(node, &shape)?;
        let layout = self.values[src].layout;
        let dst = self.new_value(&y, shape.clone(), layout);
        let map = Map {
            dims: shape,
            dst: self.values[dst].strides(),
            a: self.values[src].strides(),
            ..Map::default()
        };
        self.steps.push(Step::Unary { src, dst, f, map });
        Ok(())
    }

    /// An operand's strides against the output shape `out` (0 where it broadcasts).
    fn operand(
        &mut self,
        node: &Node,
        name: &str,
        out: &[usize],
    ) -> EngineResult<(Operand, Vec<i64>)> {
        let rank = out.len();
        if let Some(t) = self.graph.constants.get(name) {
            let shape = t.shape();
            if shape.len() > rank || (shape.len() == rank && shape[0] != 1) {
                return Err(unsupported(
                    node,
                    "constant operand that spans the batch axis",
                ));
            }
            let lead = rank - shape.len();
            let own = row_major_strides(shape);
            let mut strides = vec![0i64; rank];
            for (j, (&d, &s)) in shape.iter().zip(&own).enumerate() {
                let o = out[lead + j];
                strides[lead + j] = if d == o {
                    s
                } else if d == 1 {
                    0
                } else {
                    return Err(node_error(
                        node,
                        format!("constant `{name}` {shape:?} does not broadcast to {out:?}"),
                    ));
                };
            }
            strides[0] = 0;
            let values = t.to_f32_vec();
            let w = self.blob.push(&values, self.dtype);
            return Ok((Operand::Weight(w), strides));
        }
        let id = self.any_value(name)?;
        let shape = self.values[id].shape.clone();
        if shape.len() != rank {
            return Err(unsupported(
                node,
                "broadcast of a computed tensor across the batch axis",
            ));
        }
        let own = self.values[id].strides();
        let mut strides = vec![0i64; rank];
        for j in 0..rank {
            strides[j] = if shape[j] == out[j] {
                own[j]
            } else if shape[j] == 1 {
                0
            } else {
                return Err(node_error(
                    node,
                    format!("`{name}` {shape:?} does not broadcast to {out:?}"),
                ));
            };
        }
        Ok((Operand::Value(id), strides))
    }

    fn lower_binary(&mut self, node: &Node, op: i32) -> EngineResult<()> {
        let (a, b) = (self.input_name(node, 0)?, self.input_name(node, 1)?);
        let y = node.outputs[0].clone();
        let ys = self.shape_of(&y)?;
        self.check_rank(node, &ys)?;
        let (oa, sa) = self.operand(node, &a, &ys)?;
        let (ob, sb) = self.operand(node, &b, &ys)?;
        let layout = [oa, ob]
            .iter()
            .find_map(|o| match o {
                Operand::Value(v) if self.values[*v].shape == ys => Some(self.values[*v].layout),
                _ => None,
            })
            .unwrap_or(Layout::RowMajor);
        if matches!((oa, ob), (Operand::Weight(_), Operand::Weight(_))) {
            return Err(unsupported(
                node,
                "op on constants only (fold constants first)",
            ));
        }
        let dst = self.new_value(&y, ys.clone(), layout);
        let map = Map {
            dims: ys,
            dst: self.values[dst].strides(),
            a: sa,
            b: sb,
            ..Map::default()
        };
        self.steps.push(Step::Binary {
            a: oa,
            b: ob,
            dst,
            op,
            map,
        });
        Ok(())
    }

    /// Normalised, sorted, de-duplicated axes; the batch axis may not be among them.
    fn axes(&self, node: &Node, raw: &[i64], rank: usize) -> EngineResult<Vec<usize>> {
        let mut axes = Vec::new();
        for &a in raw {
            let n = if a < 0 { a + rank as i64 } else { a };
            if !(0..rank as i64).contains(&n) {
                return Err(node_error(
                    node,
                    format!("axis {a} is out of range for rank {rank}"),
                ));
            }
            axes.push(n as usize);
        }
        axes.sort_unstable();
        axes.dedup();
        if axes.first() == Some(&0) {
            return Err(unsupported(node, "op across the batch axis"));
        }
        Ok(axes)
    }

    fn reduce_map(
        &self,
        src: usize,
        axes: &[usize],
        dst_strides_full: Option<Vec<i64>>,
    ) -> ReduceMap {
        let shape = &self.values[src].shape;
        let strides = self.values[src].strides();
        let kept: Vec<usize> = (0..shape.len())
            .map(|d| if axes.contains(&d) { 1 } else { shape[d] })
            .collect();
        let kept_src: Vec<i64> = (0..shape.len())
            .map(|d| if axes.contains(&d) { 0 } else { strides[d] })
            .collect();
        let (kept_dst, reduced_dst) = match dst_strides_full {
            // Softmax: the output has the input's shape.
            Some(full) => (
                (0..shape.len())
                    .map(|d| if axes.contains(&d) { 0 } else { full[d] })
                    .collect(),
                axes.iter().map(|&d| full[d]).collect(),
            ),
            // Reduction: the output is the kept shape, row-major.
            None => (row_major_strides(&kept), vec![0; axes.len()]),
        };
        ReduceMap {
            kept,
            kept_src,
            kept_dst,
            reduced: axes.iter().map(|&d| shape[d]).collect(),
            reduced_src: axes.iter().map(|&d| strides[d]).collect(),
            reduced_dst,
        }
    }

    fn lower_reduce(&mut self, node: &Node, r: &tao_graph::ops::Reduce) -> EngineResult<()> {
        let x = self.input_name(node, 0)?;
        let src = self.any_value(&x)?;
        let shape = self.values[src].shape.clone();
        self.check_rank(node, &shape)?;
        let raw = match node.input(1) {
            None => Vec::new(),
            Some(n) => self
                .graph
                .constants
                .get(n)
                .map(Tensor::to_i64_vec)
                .ok_or_else(|| unsupported(node, "reduction over computed axes"))?,
        };
        let axes = if raw.is_empty() {
            if r.noop_with_empty_axes {
                return self.lower_unary(node, Unary::IDENTITY);
            }
            return Err(unsupported(
                node,
                "reduction over every axis (the batch included)",
            ));
        } else {
            self.axes(node, &raw, shape.len())?
        };
        let kind = match r.kind {
            ReduceKind::Sum => reduce::SUM,
            ReduceKind::Mean => reduce::MEAN,
            ReduceKind::Max => reduce::MAX,
            ReduceKind::Min => reduce::MIN,
            ReduceKind::Prod => reduce::PROD,
            ReduceKind::L1 => reduce::L1,
            ReduceKind::L2 => reduce::L2,
            ReduceKind::LogSum => reduce::LOG_SUM,
            ReduceKind::LogSumExp => reduce::LOG_SUM_EXP,
            ReduceKind::SumSquare => reduce::SUM_SQUARE,
        };
        let y = node.outputs[0].clone();
        let ys = self.shape_of(&y)?;
        let map = self.reduce_map(src, &axes, None);
        if ys.iter().product::<usize>() != map.kept.iter().product::<usize>() {
            return Err(node_error(
                node,
                format!("output shape {ys:?} does not match the reduction"),
            ));
        }
        let dst = self.new_value(&y, ys, Layout::RowMajor);
        self.steps.push(Step::Reduce {
            src,
            dst,
            kind,
            map,
        });
        Ok(())
    }

    fn lower_softmax(&mut self, node: &Node, s: &tao_graph::ops::Softmax) -> EngineResult<()> {
        let x = self.input_name(node, 0)?;
        let src = self.any_value(&x)?;
        let shape = self.values[src].shape.clone();
        self.check_rank(node, &shape)?;
        let rank = shape.len() as i64;
        let axis = if s.axis < 0 { s.axis + rank } else { s.axis };
        if !(1..rank).contains(&axis) {
            return Err(unsupported(node, "softmax across the batch axis"));
        }
        let axes: Vec<usize> = if s.coerce_to_2d {
            (axis as usize..shape.len()).collect()
        } else {
            vec![axis as usize]
        };
        let y = node.outputs[0].clone();
        let dst = self.new_value(&y, shape.clone(), Layout::RowMajor);
        let map = self.reduce_map(src, &axes, Some(row_major_strides(&shape)));
        self.steps.push(Step::Softmax {
            src,
            dst,
            log: s.log,
            map,
        });
        Ok(())
    }

    fn lower_concat(&mut self, node: &Node, axis: i64) -> EngineResult<()> {
        let names: Vec<String> = node.present_inputs().map(str::to_owned).collect();
        if names.iter().any(|n| self.graph.constants.contains_key(n)) {
            return Err(unsupported(node, "concatenation with a constant input"));
        }
        let y = node.outputs[0].clone();
        let ys = self.shape_of(&y)?;
        self.check_rank(node, &ys)?;
        let rank = ys.len() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(1..rank).contains(&axis) {
            return Err(unsupported(node, "concatenation along the batch axis"));
        }
        let axis = axis as usize;
        let nhwc = ys.len() == 4
            && names
                .iter()
                .all(|n| self.by_name.contains_key(&(n.clone(), Layout::Nhwc)));
        let layout = if nhwc { Layout::Nhwc } else { Layout::RowMajor };
        let mut inputs = Vec::new();
        for n in &names {
            inputs.push(self.value_in(n, layout)?);
        }
        let dst = self.new_value(&y, ys.clone(), layout);
        let out_strides = self.values[dst].strides();
        let mut at = 0usize;
        for src in inputs {
            let xs = self.values[src].shape.clone();
            let map = Map {
                dims: xs.clone(),
                dst: out_strides.clone(),
                a: self.values[src].strides(),
                dst_offset: at as i64 * out_strides[axis],
                ..Map::default()
            };
            at += xs[axis];
            self.steps.push(Step::Copy { src, dst, map });
        }
        if at != ys[axis] {
            return Err(node_error(
                node,
                "input sizes do not add up to the output along the axis",
            ));
        }
        Ok(())
    }

    fn lower_slice(&mut self, node: &Node) -> EngineResult<()> {
        let x = self.input_name(node, 0)?;
        let src = self.any_value(&x)?;
        let shape = self.values[src].shape.clone();
        let rank = shape.len();
        let ints = |i: usize| -> EngineResult<Option<Vec<i64>>> {
            match node.input(i) {
                None => Ok(None),
                Some(n) => self
                    .graph
                    .constants
                    .get(n)
                    .map(|t| Some(t.to_i64_vec()))
                    .ok_or_else(|| unsupported(node, "slice with computed bounds")),
            }
        };
        let starts = ints(1)?.unwrap_or_default();
        let ends = ints(2)?.unwrap_or_default();
        let axes = ints(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = ints(4)?.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(node_error(
                node,
                "starts, ends, axes and steps differ in length",
            ));
        }
        let from = self.values[src].strides();
        let mut a = from.clone();
        let mut offset = 0i64;
        let mut dims = shape.clone();
        for j in 0..starts.len() {
            let ax = if axes[j] < 0 {
                axes[j] + rank as i64
            } else {
                axes[j]
            };
            if !(0..rank as i64).contains(&ax) {
                return Err(node_error(
                    node,
                    format!("axis {} is out of range", axes[j]),
                ));
            }
            let ax = ax as usize;
            if ax == 0 {
                // Only the whole batch may be taken along axis 0.
                if starts[j] == 0 && steps[j] == 1 && ends[j] >= i32::MAX as i64 {
                    continue;
                }
                return Err(unsupported(node, "slice of the batch axis"));
            }
            let (first, count) =
                tao_graph::ops::layout::slice_range(starts[j], ends[j], steps[j], shape[ax])
                    .map_err(|e| node_error(node, e.to_string()))?;
            offset += first * from[ax];
            a[ax] = from[ax] * steps[j];
            dims[ax] = count;
        }
        let y = node.outputs[0].clone();
        let ys = self.shape_of(&y)?;
        if ys != dims {
            return Err(node_error(
                node,
                format!("output shape {ys:?} does not match the slice {dims:?}"),
            ));
        }
        let dst = self.new_value(&y, ys.clone(), Layout::RowMajor);
        let map = Map {
            dims: ys.clone(),
            dst: row_major_strides(&ys),
            a,
            a_offset: offset,
            ..Map::default()
        };
        self.steps.push(Step::Copy { src, dst, map });
        Ok(())
    }

    /// Shape-only ops: the elements in row-major order are unchanged.
    fn lower_reshape(&mut self, node: &Node) -> EngineResult<()> {
        let x = self.input_name(node, 0)?;
        if self.graph.constants.contains_key(&x) {
            return Err(unsupported(node, "op on a constant (fold constants first)"));
        }
        let src = self.any_value(&x)?;
        let xs = self.values[src].shape.clone();
        let y = node.outputs[0].clone();
        let ys = self.shape_of(&y)?;
        self.check_rank(node, &xs)?;
        self.check_rank(node, &ys)?;
        let dst = self.new_value(&y, ys, Layout::RowMajor);
        let map = Map {
            dims: xs.clone(),
            dst: row_major_strides(&xs),
            a: self.values[src].strides(),
            ..Map::default()
        };
        self.steps.push(Step::Copy { src, dst, map });
        Ok(())
    }

    fn lower_pad(&mut self, node: &Node, mode: PadMode) -> EngineResult<()> {
        if mode != PadMode::Constant {
            return Err(unsupported(node, "padding mode (constant padding runs)"));
        }
        let x = self.input_name(node, 0)?;
        let src = self.any_value(&x)?;
        let xs = self.values[src].shape.clone();
        let rank = xs.len();
        let pads = self
            .constant(node.input(1))
            .map(Tensor::to_i64_vec)
            .ok_or_else(|| unsupported(node, "padding with computed pads"))?;
        let value = match self.scalar_constant(node, 2) {
            Some(v) => v.unwrap_or(0.0),
            None => return Err(unsupported(node, "padding with a computed value")),
        };
        let axes: Vec<usize> = match node.input(3) {
            None => (0..rank).collect(),
            Some(n) => {
                let raw = self
                    .graph
                    .constants
                    .get(n)
                    .map(Tensor::to_i64_vec)
                    .ok_or_else(|| unsupported(node, "padding with computed axes"))?;
                raw.iter()
                    .map(|&a| {
                        if a < 0 {
                            (a + rank as i64) as usize
                        } else {
                            a as usize
                        }
                    })
                    .collect()
            }
        };
        if pads.len() != 2 * axes.len() || pads.iter().any(|&p| p < 0) {
            return Err(unsupported(
                node,
                "padding with negative or mismatched pads",
            ));
        }
        let mut begin = vec![0usize; rank];
        let mut dims = xs.clone();
        for (j, &ax) in axes.iter().enumerate() {
            if ax >= rank {
                return Err(node_error(node, format!("axis {ax} is out of range")));
            }
            let (b, e) = (pads[j] as usize, pads[j + axes.len()] as usize);
            if ax == 0 && (b > 0 || e > 0) {
                return Err(unsupported(node, "padding of the batch axis"));
            }
            begin[ax] = b;
            dims[ax] += b + e;
        }
        let y = node.outputs[0].clone();
        let ys = self.shape_of(&y)?;
        if ys != dims {
            return Err(node_error(
                node,
                format!("output shape {ys:?} does not match the pads"),
            ));
        }
        let layout = self.values[src].layout;
        let dst = self.new_value(&y, ys.clone(), layout);
        let map = PadMap {
            map: Map {
                dims: ys,
                dst: self.values[dst].strides(),
                a: self.values[src].strides(),
                ..Map::default()
            },
            src_dims: xs,
            begin,
        };
        self.steps.push(Step::Pad {
            src,
            dst,
            map,
            value,
        });
        Ok(())
    }
}

/// Places every value in the arena: a value lives from the step that writes it to the last step
/// that reads it; later values reuse freed space (first fit). Returns the arena size in bytes.
pub fn assign_offsets(
    values: &mut [Value],
    steps: &[Step],
    dtype: DType,
    max_batch: usize,
) -> usize {
    let mut liveness = Liveness::new(values.len());
    for (s, step) in steps.iter().enumerate() {
        for (v, writes) in step.values() {
            liveness.touch(s, v, writes);
        }
    }
    let sizes: Vec<usize> = values
        .iter()
        .map(|v| v.block_bytes(dtype, max_batch))
        .collect();
    let (offsets, top) = liveness.first_fit(&sizes);
    for (value, offset) in values.iter_mut().zip(offsets) {
        if let Some(offset) = offset {
            value.offset = offset;
        }
    }
    top.max(ALIGN)
}
