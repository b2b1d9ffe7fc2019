//! Lowering an optimised graph into the CPU program: picks a kernel per node, fuses bias, activation
//! and residual adds into convolutions, keeps 4-D activations in NHWC between kernels, and assigns
//! every value a place in one preallocated arena by liveness.

use std::collections::{HashMap, HashSet};

use tao_graph::ir::{BinaryOp, Facts, Graph, Node, Op, ReduceKind, Tensor, UnaryOp};
use tao_graph::ops::conv::WindowGeometry;
use tao_graph::ops::{AutoPad, PoolKind as GraphPoolKind};
use tao_kernels::{
    Activation, Conv2dSpec, ConvAlgorithm, ConvTranspose2dSpec, Epilogue, GlobalPoolKind,
    Padding2d, Pool2dSpec, PoolKind, PrepareOptions, PreparedConv, PreparedConvTranspose,
    ResidualAdd,
};
use tao_kernels_int8::PreparedQConv;

use super::generic::{
    BroadcastShape, Operand, binary_fn, broadcast_strides, reduce_supported, unary_fn,
};
use crate::arena::Liveness;
use crate::backend::{EngineError, EngineResult, IoDesc};

/// Where a 4-D value's elements are: logical NCHW order, or NHWC as the kernels want.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// One tensor of the program, for one image; the arena holds `max_batch` of them.
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    /// Logical shape with the batch dimension first (its size here is 1).
    pub shape: Vec<usize>,
    pub layout: Layout,
    /// Offset in the arena, in floats.
    pub offset: usize,
    /// Held as s8 (quantized with this scale) instead of f32: an INT8 convolution's output read
    /// only by INT8 convolutions with that input scale.
    pub s8_scale: Option<f32>,
}

impl Value {
    pub fn per_image(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Arena floats that `images` images of this value take (s8 values pack four per float).
    pub fn floats(&self, images: usize) -> usize {
        let elements = self.per_image() * images;
        match self.s8_scale {
            Some(_) => elements.div_ceil(4),
            None => elements,
        }
    }

    /// `[H, W, C]` of a 4-D value.
    pub fn hwc(&self) -> [usize; 3] {
        [self.shape[2], self.shape[3], self.shape[1]]
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Elementwise {
    Activation(Activation),
    Add,
}

#[derive(Debug)]
pub enum Step {
    ToNhwc {
        src: usize,
        dst: usize,
    },
    ToNchw {
        src: usize,
        dst: usize,
    },
    Conv {
        node: String,
        conv: Box<PreparedConv>,
        input: usize,
        output: usize,
        residual: Option<usize>,
    },
    ConvTranspose {
        node: String,
        conv: Box<PreparedConvTranspose>,
        input: usize,
        output: usize,
    },
    /// A convolution in INT8 (see `cpu::int8`): f32 in, f32 out, same fusions as `Conv`. The
    /// input may be NCHW (`input_nchw`): its quantizing copy changes the layout on the way.
    ConvInt8 {
        node: String,
        conv: Box<PreparedQConv>,
        input: usize,
        input_nchw: bool,
        output: usize,
        residual: Option<usize>,
    },
    Pool {
        spec: Pool2dSpec,
        input: usize,
        output: usize,
    },
    GlobalPool {
        kind: GlobalPoolKind,
        input: usize,
        output: usize,
    },
    Elementwise {
        f: Elementwise,
        inputs: Vec<usize>,
        output: usize,
    },
    Binary {
        kind: BinaryOp,
        op: &'static str,
        f: fn(f32, f32) -> f32,
        shape: BroadcastShape,
        a: Operand,
        b: Operand,
        output: usize,
    },
    Unary {
        kind: UnaryOp,
        op: &'static str,
        f: fn(f32) -> f32,
        input: usize,
        output: usize,
    },
    /// `[outer, reduced, inner]` → `[outer, inner]`; `outer` is per image.
    Reduce {
        kind: ReduceKind,
        outer: usize,
        reduced: usize,
        inner: usize,
        input: usize,
        output: usize,
    },
    /// Per image: `outer` rows, each the inputs' `blocks` in turn.
    Concat {
        outer: usize,
        blocks: Vec<usize>,
        inputs: Vec<usize>,
        output: usize,
    },
    /// Pure data movement (reshape, squeeze, slice, transpose, gather by constant indices, ...):
    /// per image, `output[i] = input[map[i]]` on NCHW values.
    Rearrange {
        node: String,
        map: Vec<u32>,
        input: usize,
        output: usize,
    },
    /// Ops without a fast kernel: the reference evaluation on NCHW copies (allocates per run).
    Reference {
        node: Box<Node>,
        inputs: Vec<Option<RefInput>>,
        outputs: Vec<usize>,
    },
}

#[derive(Debug)]
pub enum RefInput {
    Value(usize),
    Constant(Box<Tensor>),
}

/// `conv[<kernel>] <node> -> <output> [+<activation>] [+residual(<tensor>)]`, for either precision.
fn describe_conv(
    kernel: &str,
    node: &str,
    output: &str,
    activation: Activation,
    residual: Option<&str>,
) -> String {
    let mut s = format!("conv[{kernel}] {node} -> {output}");
    if activation != Activation::None {
        s += &format!(" +{activation:?}");
    }
    if let Some(r) = residual {
        s += &format!(" +residual({r})");
    }
    s
}

impl Step {
    /// Short description for `inspect --optimized`.
    pub fn describe(&self, values: &[Value]) -> String {
        let v = |i: &usize| values[*i].name.as_str();
        match self {
            Step::ToNhwc { src, .. } => format!("to-nhwc {}", v(src)),
            Step::ToNchw { src, .. } => format!("to-nchw {}", v(src)),
            Step::Conv {
                node,
                conv,
                output,
                residual,
                ..
            } => {
                let kernel = format!("fp32 {}", conv.algorithm().name());
                describe_conv(
                    &kernel,
                    node,
                    v(output),
                    conv.spec().epilogue.activation,
                    residual.map(|r| v(&r)),
                )
            }
            Step::ConvInt8 {
                node,
                conv,
                input,
                output,
                residual,
                ..
            } => {
                let mut kernel = format!("int8 {}", conv.algorithm().name());
                // Where the activations stay in s8 between INT8 layers.
                if values[*input].s8_scale.is_some() {
                    kernel += ", s8 in";
                }
                if values[*output].s8_scale.is_some() {
                    kernel += ", s8 out";
                }
                describe_conv(
                    &kernel,
                    node,
                    v(output),
                    conv.spec().epilogue.activation,
                    residual.map(|r| v(&r)),
                )
            }
            Step::ConvTranspose { node, output, .. } => {
                format!("conv-transpose {node} -> {}", v(output))
            }
            Step::Pool { output, .. } => format!("pool -> {}", v(output)),
            Step::GlobalPool { output, .. } => format!("global-pool -> {}", v(output)),
            Step::Elementwise { f, output, .. } => format!("{f:?} -> {}", v(output)),
            Step::Binary { op, output, .. } | Step::Unary { op, output, .. } => {
                format!("{op} -> {}", v(output))
            }
            Step::Reduce { kind, output, .. } => format!("reduce-{kind:?} -> {}", v(output)),
            Step::Concat { output, .. } => format!("concat -> {}", v(output)),
            Step::Rearrange { node, output, .. } => format!("rearrange {node} -> {}", v(output)),
            Step::Reference { node, .. } => format!("reference {} ({})", node.name, node.op_type()),
        }
    }
}

/// Kernel choices that a plan carries, so loading repeats none of the building work.
pub trait Prepared {
    fn conv(
        &mut self,
        node: &str,
        spec: &Conv2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
    ) -> EngineResult<PreparedConv>;
    fn conv_transpose(
        &mut self,
        node: &str,
        spec: &ConvTranspose2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
    ) -> EngineResult<PreparedConvTranspose>;
    /// Whether INT8 convolutions may hand s8 activations to one another (see
    /// `keep_s8_between_int8_convs`); otherwise every activation goes through memory as f32.
    fn s8_activations(&self) -> bool {
        true
    }
    /// An INT8 kernel for the convolution reading tensor `input`, or `None` to keep FP32.
    fn conv_int8(
        &mut self,
        _node: &str,
        _spec: &Conv2dSpec,
        _weights: &[f32],
        _bias: Option<&[f32]>,
        _input: &str,
    ) -> EngineResult<Option<PreparedQConv>> {
        Ok(None)
    }
}

/// The kernel chosen for one convolution.
enum ConvKernel {
    Fp32(Box<PreparedConv>),
    Int8(Box<PreparedQConv>),
}

/// Builds kernels from the weights (the build step).
pub struct PrepareFresh;

impl Prepared for PrepareFresh {
    fn conv(
        &mut self,
        node: &str,
        spec: &Conv2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
    ) -> EngineResult<PreparedConv> {
        PreparedConv::prepare(spec, weights, bias, PrepareOptions::default())
            .map_err(|e| kernel_error(node, "Conv", e))
    }

    fn conv_transpose(
        &mut self,
        node: &str,
        spec: &ConvTranspose2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
    ) -> EngineResult<PreparedConvTranspose> {
        PreparedConvTranspose::prepare(spec, weights, bias)
            .map_err(|e| kernel_error(node, "ConvTranspose", e))
    }
}

pub fn kernel_error(node: &str, op: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Node {
        node: node.to_owned(),
        op: op.to_owned(),
        detail: e.to_string(),
    }
}

pub struct Program {
    pub values: Vec<Value>,
    pub steps: Vec<Step>,
    pub inputs: Vec<(IoDesc, usize)>,
    pub outputs: Vec<(IoDesc, usize)>,
    /// Arena size for one image, in floats.
    pub arena_per_image: usize,
}

struct Lowering<'g> {
    graph: &'g Graph,
    facts: Facts,
    values: Vec<Value>,
    steps: Vec<Step>,
    /// Tensor name → value id per layout.
    by_name: HashMap<(String, Layout), usize>,
    /// Nodes already lowered as part of a fusion.
    fused: HashSet<usize>,
}

/// Lowers `graph` (optimised; inputs `[N, ...]` with N symbolic or 1) for the given per-image input
/// shapes.
pub fn lower(graph: &Graph, prepared: &mut dyn Prepared) -> EngineResult<Program> {
    let mut shapes = Vec::new();
    for input in &graph.inputs {
        let mut dims: Vec<usize> = Vec::new();
        for (i, d) in input.shape.dims().iter().enumerate() {
            match d.fixed() {
                Some(v) => dims.push(if i == 0 { 1 } else { v }),
                None if i == 0 => dims.push(1),
                None => {
                    return Err(EngineError::Invalid(format!(
                        "input `{}` dimension {i} is not fixed: give the input dims (e.g. -d 3,544,960)",
                        input.name
                    )));
                }
            }
        }
        shapes.push((input.name.clone(), dims));
    }
    let shape_refs: Vec<(&str, &[usize])> = shapes
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let facts = graph.infer_with_input_shapes(&shape_refs)?;
    let mut l = Lowering {
        graph,
        facts,
        values: Vec::new(),
        steps: Vec::new(),
        by_name: HashMap::new(),
        fused: HashSet::new(),
    };
    let mut inputs = Vec::new();
    for (name, dims) in &shapes {
        let id = l.new_value(name, dims.clone(), Layout::Nchw);
        inputs.push((
            IoDesc {
                name: name.clone(),
                shape: dims[1..].to_vec(),
            },
            id,
        ));
    }
    for i in 0..graph.nodes.len() {
        if !l.fused.contains(&i) {
            l.lower_node(i, prepared)?;
        }
    }
    let mut outputs = Vec::new();
    for name in &graph.outputs {
        let id = l.value_in(name, Layout::Nchw)?;
        let shape = l.values[id].shape[1..].to_vec();
        outputs.push((
            IoDesc {
                name: name.clone(),
                shape,
            },
            id,
        ));
    }
    if prepared.s8_activations() {
        keep_s8_between_int8_convs(&mut l.values, &l.steps, &outputs);
    }
    let arena_per_image = assign_offsets(&mut l.values, &l.steps, &inputs, &outputs);
    Ok(Program {
        values: l.values,
        steps: l.steps,
        inputs,
        outputs,
        arena_per_image,
    })
}

impl Lowering<'_> {
    fn new_value(&mut self, name: &str, shape: Vec<usize>, layout: Layout) -> usize {
        let id = self.values.len();
        self.values.push(Value {
            name: name.to_owned(),
            shape,
            layout,
            offset: 0,
            s8_scale: None,
        });
        self.by_name.insert((name.to_owned(), layout), id);
        id
    }

    fn shape_of(&self, name: &str) -> EngineResult<Vec<usize>> {
        let fact = self
            .facts
            .get(name)
            .ok_or_else(|| EngineError::Invalid(format!("no shape known for tensor `{name}`")))?;
        fact.shape.to_fixed().ok_or_else(|| {
            EngineError::Invalid(format!(
                "tensor `{name}` has no fixed shape ({:?})",
                fact.shape
            ))
        })
    }

    /// The value for `name` in `layout`, converting from the other layout when needed.
    fn value_in(&mut self, name: &str, layout: Layout) -> EngineResult<usize> {
        if let Some(&id) = self.by_name.get(&(name.to_owned(), layout)) {
            return Ok(id);
        }
        let other = match layout {
            Layout::Nchw => Layout::Nhwc,
            Layout::Nhwc => Layout::Nchw,
        };
        let src = *self.by_name.get(&(name.to_owned(), other)).ok_or_else(|| {
            EngineError::Invalid(format!("tensor `{name}` is used before it is computed"))
        })?;
        let shape = self.values[src].shape.clone();
        if shape.len() != 4 {
            // Layouts only differ for 4-D values.
            self.by_name.insert((name.to_owned(), layout), src);
            return Ok(src);
        }
        let dst = self.new_value(name, shape, layout);
        self.steps.push(match layout {
            Layout::Nhwc => Step::ToNhwc { src, dst },
            Layout::Nchw => Step::ToNchw { src, dst },
        });
        Ok(dst)
    }

    fn constant(&self, name: Option<&str>) -> Option<&Tensor> {
        name.and_then(|n| self.graph.constants.get(n))
    }

    fn activation_of(&self, node: &Node) -> Option<Activation> {
        match &node.op {
            Op::Unary(UnaryOp::Relu) => Some(Activation::Relu),
            Op::Unary(UnaryOp::Sigmoid) => Some(Activation::Sigmoid),
            Op::Unary(UnaryOp::LeakyRelu { alpha }) => {
                Some(Activation::LeakyRelu { alpha: *alpha })
            }
            Op::Clip => {
                let bound = |i, default: f32| match node.input(i) {
                    None => Some(default),
                    Some(n) => self
                        .graph
                        .constants
                        .get(n)
                        .filter(|t| t.len() == 1)
                        .map(|t| t.to_f32_vec()[0]),
                };
                let (min, max) = (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?);
                Some(if min == 0.0 && max == 6.0 {
                    Activation::Relu6
                } else if min == 0.0 && max == f32::INFINITY {
                    Activation::Relu
                } else {
                    Activation::Clip { min, max }
                })
            }
            _ => None,
        }
    }

    /// For `Add(tensor, other)` read only by `tensor`'s producer chain: the other operand, when it is
    /// an already-computed value of the same shape.
    fn residual_partner(&self, add: &Node, tensor: &str) -> Option<String> {
        let other = self.graph.other_add_operand(add, tensor)?;
        let computed = self.by_name.contains_key(&(other.to_owned(), Layout::Nhwc))
            || self.by_name.contains_key(&(other.to_owned(), Layout::Nchw));
        let same = self.shape_of(other).ok()? == self.shape_of(tensor).ok()?;
        (computed && same).then(|| other.to_owned())
    }

    fn lower_node(&mut self, i: usize, prepared: &mut dyn Prepared) -> EngineResult<()> {
        let node = &self.graph.nodes[i];
        match &node.op {
            Op::Conv(conv) if self.conv_is_2d(node) => self.lower_conv(i, conv.clone(), prepared),
            Op::ConvTranspose(_) if self.conv_is_2d(node) => self.lower_conv_transpose(i, prepared),
            Op::Pool(p) if self.rank_of(node.input(0)) == Some(4) && node.outputs.len() == 1 => {
                let p = p.clone();
                self.lower_pool(i, &p)
            }
            Op::GlobalPool(kind) if self.rank_of(node.input(0)) == Some(4) => {
                let kind = match kind {
                    GraphPoolKind::Max => GlobalPoolKind::Max,
                    GraphPoolKind::Average => GlobalPoolKind::Avg,
                };
                let (x, y) = (
                    node.input(0).unwrap_or_default().to_owned(),
                    node.outputs[0].clone(),
                );
                let input = self.value_in(&x, Layout::Nhwc)?;
                let output = self.new_value(&y, self.shape_of(&y)?, Layout::Nhwc);
                self.steps.push(Step::GlobalPool {
                    kind,
                    input,
                    output,
                });
                Ok(())
            }
            _ => {
                if let Some(act) = self.activation_of(node)
                    && let Some(x) = node.input(0)
                    && !self.graph.constants.contains_key(x)
                {
                    let (x, y) = (x.to_owned(), node.outputs[0].clone());
                    let layout = self.current_layout(&x)?;
                    let input = self.value_in(&x, layout)?;
                    let output = self.new_value(&y, self.shape_of(&y)?, layout);
                    self.steps.push(Step::Elementwise {
                        f: Elementwise::Activation(act),
                        inputs: vec![input],
                        output,
                    });
                    return Ok(());
                }
                if matches!(node.op, Op::Binary(BinaryOp::Add))
                    && let (Some(a), Some(b)) = (node.input(0), node.input(1))
                    && !self.graph.constants.contains_key(a)
                    && !self.graph.constants.contains_key(b)
                    && self.shape_of(a)? == self.shape_of(b)?
                {
                    let (a, b, y) = (a.to_owned(), b.to_owned(), node.outputs[0].clone());
                    let layout = self.current_layout(&a)?;
                    let ia = self.value_in(&a, layout)?;
                    let ib = self.value_in(&b, layout)?;
                    let output = self.new_value(&y, self.shape_of(&y)?, layout);
                    self.steps.push(Step::Elementwise {
                        f: Elementwise::Add,
                        inputs: vec![ia, ib],
                        output,
                    });
                    return Ok(());
                }
                if self.lower_generic(i)? || self.lower_rearrange(i)? {
                    return Ok(());
                }
                self.lower_reference(i)
            }
        }
    }

    /// Binary and unary maths, reductions and concatenation on f32 values; false when the node
    /// does not fit (it then runs on the reference).
    fn lower_generic(&mut self, i: usize) -> EngineResult<bool> {
        let graph = self.graph;
        let node = &graph.nodes[i];
        if node.outputs.len() != 1 {
            return Ok(false);
        }
        let y = node.outputs[0].clone();
        let is_f32 = |name: &str| {
            self.facts
                .get(name)
                .is_some_and(|f| f.dtype == tao_graph::ir::DType::F32)
        };
        if !is_f32(&y)
            || node
                .present_inputs()
                .any(|n| !is_f32(n) && !self.graph.constants.contains_key(n))
        {
            return Ok(false);
        }
        let ys = self.shape_of(&y)?;
        if ys.is_empty() || ys[0] != 1 || ys.len() > super::generic::MAX_RANK {
            return Ok(false);
        }
        match &node.op {
            Op::Binary(op) => {
                let (Some(f), Some(a), Some(b)) = (binary_fn(*op), node.input(0), node.input(1))
                else {
                    return Ok(false);
                };
                let operand =
                    |this: &mut Self, name: &str| -> EngineResult<Option<(Operand, Vec<usize>)>> {
                        if let Some(t) = this.graph.constants.get(name) {
                            if t.rank() == ys.len() && t.shape()[0] != 1 {
                                return Ok(None);
                            }
                            let Some(strides) = broadcast_strides(t.shape(), &ys) else {
                                return Ok(None);
                            };
                            return Ok(Some((Operand::Constant(t.to_f32_vec()), strides)));
                        }
                        let shape = this.shape_of(name)?;
                        if shape.len() != ys.len() {
                            return Ok(None);
                        }
                        let Some(mut strides) = broadcast_strides(&shape, &ys) else {
                            return Ok(None);
                        };
                        strides[0] = shape[1..].iter().product();
                        let id = this.value_in(name, Layout::Nchw)?;
                        Ok(Some((Operand::Value(id), strides)))
                    };
                let (Some((a, sa)), Some((b, sb))) = (operand(self, a)?, operand(self, b)?) else {
                    return Ok(false);
                };
                let output = self.new_value(&y, ys.clone(), Layout::Nchw);
                let shape = BroadcastShape {
                    out: ys,
                    a: sa,
                    b: sb,
                };
                self.steps.push(Step::Binary {
                    kind: *op,
                    op: node.op_type(),
                    f,
                    shape,
                    a,
                    b,
                    output,
                });
                Ok(true)
            }
            Op::Unary(op) => {
                let (Some(f), Some(x)) = (unary_fn(*op), node.input(0)) else {
                    return Ok(false);
                };
                if self.graph.constants.contains_key(x) {
                    return Ok(false);
                }
                let x = x.to_owned();
                let layout = self.current_layout(&x)?;
                let input = self.value_in(&x, layout)?;
                let output = self.new_value(&y, ys, layout);
                self.steps.push(Step::Unary {
                    op: node.op_type(),
                    kind: *op,
                    f,
                    input,
                    output,
                });
                Ok(true)
            }
            Op::Reduce(r) if reduce_supported(r.kind) => {
                let Some(x) = node
                    .input(0)
                    .filter(|x| !self.graph.constants.contains_key(*x))
                else {
                    return Ok(false);
                };
                let xs = self.shape_of(x)?;
                let Some(axes) = self.constant(node.input(1)).map(Tensor::to_i64_vec) else {
                    return Ok(false);
                };
                let rank = xs.len() as i64;
                let mut axes: Vec<usize> = axes
                    .iter()
                    .map(|&a| if a < 0 { a + rank } else { a })
                    .filter(|&a| (0..rank).contains(&a))
                    .map(|a| a as usize)
                    .collect();
                axes.sort_unstable();
                axes.dedup();
                let contiguous = axes.windows(2).all(|w| w[1] == w[0] + 1);
                if axes.is_empty() || axes[0] == 0 || !contiguous {
                    return Ok(false);
                }
                let (first, last) = (axes[0], axes[axes.len() - 1]);
                let (x, kind) = (x.to_owned(), r.kind);
                let input = self.value_in(&x, Layout::Nchw)?;
                let output = self.new_value(&y, ys, Layout::Nchw);
                self.steps.push(Step::Reduce {
                    kind,
                    outer: xs[1..first].iter().product(),
                    reduced: xs[first..=last].iter().product(),
                    inner: xs[last + 1..].iter().product(),
                    input,
                    output,
                });
                Ok(true)
            }
            Op::Concat(c) => {
                let names: Vec<String> = node.present_inputs().map(str::to_owned).collect();
                if names.is_empty() || names.iter().any(|n| self.graph.constants.contains_key(n)) {
                    return Ok(false);
                }
                let rank = ys.len() as i64;
                let axis = if c.axis < 0 { c.axis + rank } else { c.axis };
                if !(1..rank).contains(&axis) {
                    return Ok(false);
                }
                // Concatenate where the inputs already are: NHWC when all 4-D inputs are.
                let nhwc = rank == 4
                    && names
                        .iter()
                        .all(|n| self.by_name.contains_key(&(n.clone(), Layout::Nhwc)));
                let (layout, phys_axis) = match (nhwc, axis) {
                    (true, 1) => (Layout::Nhwc, 3),
                    (true, a) => (Layout::Nhwc, a as usize - 1),
                    (false, a) => (Layout::Nchw, a as usize),
                };
                let physical = |s: &[usize]| match layout {
                    Layout::Nhwc => vec![s[0], s[2], s[3], s[1]],
                    Layout::Nchw => s.to_vec(),
                };
                let mut inputs = Vec::new();
                let mut blocks = Vec::new();
                for n in &names {
                    let p = physical(&self.shape_of(n)?);
                    blocks.push(p[phys_axis..].iter().product());
                    inputs.push(self.value_in(n, layout)?);
                }
                let outer = physical(&ys)[1..phys_axis].iter().product();
                let output = self.new_value(&y, ys, layout);
                self.steps.push(Step::Concat {
                    outer,
                    blocks,
                    inputs,
                    output,
                });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn current_layout(&self, name: &str) -> EngineResult<Layout> {
        if self.by_name.contains_key(&(name.to_owned(), Layout::Nhwc)) {
            Ok(Layout::Nhwc)
        } else if self.by_name.contains_key(&(name.to_owned(), Layout::Nchw)) {
            Ok(Layout::Nchw)
        } else {
            Err(EngineError::Invalid(format!(
                "tensor `{name}` is used before it is computed"
            )))
        }
    }

    fn rank_of(&self, name: Option<&str>) -> Option<usize> {
        name.and_then(|n| self.facts.get(n)).map(|f| f.shape.rank())
    }

    fn conv_is_2d(&self, node: &Node) -> bool {
        self.rank_of(node.input(0)) == Some(4)
            && self
                .constant(node.input(1))
                .is_some_and(|w| w.rank() == 4 && w.as_f32().is_some())
            && (node.input(2).is_none()
                || self
                    .constant(node.input(2))
                    .is_some_and(|b| b.as_f32().is_some()))
            && node.outputs.len() == 1
    }

    fn lower_conv(
        &mut self,
        i: usize,
        conv: tao_graph::ops::Conv,
        prepared: &mut dyn Prepared,
    ) -> EngineResult<()> {
        let graph = self.graph;
        let node = &graph.nodes[i];
        let x = node.input(0).unwrap_or_default().to_owned();
        let w = self
            .constant(node.input(1))
            .cloned()
            .unwrap_or_else(|| Tensor::scalar_f32(0.0));
        let bias = self.constant(node.input(2)).map(Tensor::to_f32_vec);
        let xs = self.shape_of(&x)?;
        let [m, cg, kh, kw] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
        let group = conv.group.max(1);
        let mut geom = WindowGeometry::new(&[kh, kw], &conv.strides, &conv.dilations, &conv.pads)
            .map_err(|e| e.at(&node.name, "Conv"))?;
        if conv.auto_pad != AutoPad::NotSet {
            geom.resolve_auto_pad(conv.auto_pad, &xs[2..]);
        }

        // Fusion: conv → [Add residual] → [activation] → [Add residual], each link read only once.
        let mut out = node.outputs[0].clone();
        let mut activation = Activation::None;
        let mut residual_mode = ResidualAdd::None;
        let mut residual = None;
        let mut try_residual = |this: &mut Self, out: &mut String, mode| {
            if let Some(r) = this.graph.sole_consumer(out)
                && let Some(other) = this.residual_partner(&graph.nodes[r], out)
            {
                this.fused.insert(r);
                *out = graph.nodes[r].outputs[0].clone();
                residual = Some(other);
                return Some(mode);
            }
            None
        };
        if let Some(mode) = try_residual(self, &mut out, ResidualAdd::BeforeActivation) {
            residual_mode = mode;
        }
        if let Some(r) = self.graph.sole_consumer(&out)
            && let Some(act) = self.activation_of(&graph.nodes[r])
            && graph.nodes[r].input(0) == Some(out.as_str())
        {
            self.fused.insert(r);
            activation = act;
            out = graph.nodes[r].outputs[0].clone();
            if residual_mode == ResidualAdd::None
                && let Some(mode) = try_residual(self, &mut out, ResidualAdd::AfterActivation)
            {
                residual_mode = mode;
            }
        }
        let spec = Conv2dSpec {
            in_channels: xs[1],
            out_channels: m,
            groups: group,
            kernel: [kh, kw],
            stride: [geom.strides[0], geom.strides[1]],
            dilation: [geom.dilations[0], geom.dilations[1]],
            padding: Padding2d {
                top: geom.pads_begin[0],
                left: geom.pads_begin[1],
                bottom: geom.pads_end[0],
                right: geom.pads_end[1],
            },
            input_size: [xs[2], xs[3]],
            epilogue: Epilogue::new(activation, residual_mode),
        };
        if cg * group != xs[1] {
            return Err(kernel_error(
                &node.name,
                "Conv",
                format!(
                    "weights expect {} input channels, input has {}",
                    cg * group,
                    xs[1]
                ),
            ));
        }
        let weights = w.as_f32().unwrap_or_default();
        let int8 = prepared.conv_int8(&node.name, &spec, weights, bias.as_deref(), &x)?;
        // An INT8 convolution reads a value only held in NCHW (a network input) as it is.
        let nchw_only = match (
            self.by_name.get(&(x.clone(), Layout::Nhwc)),
            self.by_name.get(&(x.clone(), Layout::Nchw)),
        ) {
            (None, Some(&id)) if self.values[id].shape.len() == 4 => Some(id),
            _ => None,
        };
        let (input, input_nchw) = match (&int8, nchw_only) {
            (Some(_), Some(id)) => (id, true),
            _ => (self.value_in(&x, Layout::Nhwc)?, false),
        };
        let residual = match residual {
            Some(r) => Some(self.value_in(&r, Layout::Nhwc)?),
            None => None,
        };
        let kernel = match int8 {
            Some(q) => ConvKernel::Int8(Box::new(q)),
            None => ConvKernel::Fp32(Box::new(prepared.conv(
                &node.name,
                &spec,
                weights,
                bias.as_deref(),
            )?)),
        };
        let [oh, ow] = match &kernel {
            ConvKernel::Int8(q) => q.output_size(),
            ConvKernel::Fp32(c) => c.output_size(),
        };
        let output = self.new_value(&out, vec![1, m, oh, ow], Layout::Nhwc);
        let node = node.name.clone();
        self.steps.push(match kernel {
            ConvKernel::Int8(conv) => Step::ConvInt8 {
                node,
                conv,
                input,
                input_nchw,
                output,
                residual,
            },
            ConvKernel::Fp32(conv) => Step::Conv {
                node,
                conv,
                input,
                output,
                residual,
            },
        });
        Ok(())
    }

    fn lower_conv_transpose(&mut self, i: usize, prepared: &mut dyn Prepared) -> EngineResult<()> {
        let node = &self.graph.nodes[i];
        let Op::ConvTranspose(ct) = &node.op else {
            return self.lower_reference(i);
        };
        let x = node.input(0).unwrap_or_default().to_owned();
        let y = node.outputs[0].clone();
        let w = self
            .constant(node.input(1))
            .cloned()
            .unwrap_or_else(|| Tensor::scalar_f32(0.0));
        let bias = self.constant(node.input(2)).map(Tensor::to_f32_vec);
        let xs = self.shape_of(&x)?;
        let ys = self.shape_of(&y)?;
        let w_dims: Vec<tao_graph::ir::Dim> = w
            .shape()
            .iter()
            .map(|&d| tao_graph::ir::Dim::Fixed(d))
            .collect();
        let (geom, _) = ct
            .resolve(&w_dims, &xs)
            .map_err(|e| e.at(&node.name, "ConvTranspose"))?;
        let group = ct.group.max(1);
        let out_pad = |a: usize| ct.output_padding.get(a).copied().unwrap_or(0);
        let spec = ConvTranspose2dSpec {
            in_channels: xs[1],
            out_channels: w.shape()[1] * group,
            groups: group,
            kernel: [w.shape()[2], w.shape()[3]],
            stride: [geom.strides[0], geom.strides[1]],
            dilation: [geom.dilations[0], geom.dilations[1]],
            padding: Padding2d {
                top: geom.pads_begin[0],
                left: geom.pads_begin[1],
                bottom: geom.pads_end[0],
                right: geom.pads_end[1],
            },
            output_padding: [out_pad(0), out_pad(1)],
            input_size: [xs[2], xs[3]],
            epilogue: Epilogue::default(),
        };
        let prepared_conv = prepared.conv_transpose(
            &node.name,
            &spec,
            w.as_f32().unwrap_or_default(),
            bias.as_deref(),
        )?;
        if prepared_conv.output_size() != [ys[2], ys[3]] {
            // Attributes this kernel does not model (e.g. output_shape quirks): stay exact.
            return self.lower_reference(i);
        }
        let input = self.value_in(&x, Layout::Nhwc)?;
        let output = self.new_value(&y, ys, Layout::Nhwc);
        self.steps.push(Step::ConvTranspose {
            node: node.name.clone(),
            conv: Box::new(prepared_conv),
            input,
            output,
        });
        Ok(())
    }

    fn lower_pool(&mut self, i: usize, p: &tao_graph::ops::Pool) -> EngineResult<()> {
        let node = &self.graph.nodes[i];
        let x = node.input(0).unwrap_or_default().to_owned();
        let y = node.outputs[0].clone();
        let xs = self.shape_of(&x)?;
        let ys = self.shape_of(&y)?;
        let mut geom = p.geometry().map_err(|e| e.at(&node.name, node.op_type()))?;
        if geom.kernel.len() != 2 {
            return self.lower_reference(i);
        }
        if p.auto_pad != AutoPad::NotSet {
            geom.resolve_auto_pad(p.auto_pad, &xs[2..]);
        }
        let spec = Pool2dSpec {
            kind: match p.kind {
                GraphPoolKind::Max => PoolKind::Max,
                GraphPoolKind::Average => PoolKind::Avg {
                    count_include_pad: p.count_include_pad,
                },
            },
            kernel: [geom.kernel[0], geom.kernel[1]],
            stride: [geom.strides[0], geom.strides[1]],
            dilation: [geom.dilations[0], geom.dilations[1]],
            padding: Padding2d {
                top: geom.pads_begin[0],
                left: geom.pads_begin[1],
                bottom: geom.pads_end[0],
                right: geom.pads_end[1],
            },
            ceil_mode: p.ceil_mode,
        };
        match spec.output_size([xs[2], xs[3]]) {
            Ok(size) if size == [ys[2], ys[3]] => {}
            _ => return self.lower_reference(i),
        }
        let input = self.value_in(&x, Layout::Nhwc)?;
        let output = self.new_value(&y, ys, Layout::Nhwc);
        self.steps.push(Step::Pool {
            spec,
            input,
            output,
        });
        Ok(())
    }

    /// Ops that only move elements, when every input but the data is a constant: running the op
    /// once on element indices gives, per output element, the input element it copies. Used only
    /// when the op treats every image alike (checked by running it on two images).
    fn lower_rearrange(&mut self, i: usize) -> EngineResult<bool> {
        let graph = self.graph;
        let node = &graph.nodes[i];
        let moves_data = matches!(
            node.op,
            Op::Reshape(_)
                | Op::Flatten(_)
                | Op::Transpose(_)
                | Op::Squeeze
                | Op::Unsqueeze
                | Op::Slice
                | Op::Gather(_)
                | Op::Expand
                | Op::Tile
                | Op::Identity
        );
        let Some(x) = node.input(0) else {
            return Ok(false);
        };
        let constant_rest = node
            .inputs
            .iter()
            .skip(1)
            .flatten()
            .all(|n| graph.constants.contains_key(n));
        if !moves_data
            || node.outputs.len() != 1
            || graph.constants.contains_key(x)
            || !constant_rest
        {
            return Ok(false);
        }
        let is_f32 = |name: &str| {
            self.facts
                .get(name)
                .is_some_and(|f| f.dtype == tao_graph::ir::DType::F32)
        };
        let (xs, ys) = (self.shape_of(x)?, self.shape_of(&node.outputs[0])?);
        let per_image: usize = xs.iter().skip(1).product();
        // Indices travel as f32: exact below 2^24 for both images of the check.
        if !is_f32(x)
            || xs.first() != Some(&1)
            || ys.first() != Some(&1)
            || 2 * per_image >= 1 << 24
        {
            return Ok(false);
        }
        let indices = |images: usize| -> Option<Vec<f32>> {
            let mut shape = xs.clone();
            shape[0] = images;
            let data = (0..per_image * images).map(|k| k as f32).collect();
            let input = Tensor::from_f32(shape, data).ok()?;
            let mut args: Vec<Option<&Tensor>> = vec![Some(&input)];
            args.extend(
                node.inputs
                    .iter()
                    .skip(1)
                    .map(|n| n.as_deref().and_then(|n| graph.constants.get(n))),
            );
            let out = node.op.eval(&args, 1).ok()?.into_iter().next()?;
            out.as_f32().map(<[f32]>::to_vec)
        };
        let (Some(one), Some(two)) = (indices(1), indices(2)) else {
            return Ok(false);
        };
        let per_output: usize = ys.iter().skip(1).product();
        let same_per_image = one.len() == per_output
            && two.len() == 2 * per_output
            && two[..per_output] == one[..]
            && two[per_output..]
                .iter()
                .zip(&one)
                .all(|(b, a)| *b == a + per_image as f32);
        if !same_per_image {
            return Ok(false);
        }
        let map = one.iter().map(|&k| k as u32).collect();
        let (x, y) = (x.to_owned(), node.outputs[0].clone());
        let input = self.value_in(&x, Layout::Nchw)?;
        let output = self.new_value(&y, ys, Layout::Nchw);
        self.steps.push(Step::Rearrange {
            node: node.name.clone(),
            map,
            input,
            output,
        });
        Ok(true)
    }

    fn lower_reference(&mut self, i: usize) -> EngineResult<()> {
        let node = &self.graph.nodes[i];
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for name in &node.inputs {
            inputs.push(match name.as_deref() {
                None => None,
                Some(n) => match self.graph.constants.get(n) {
                    Some(t) => Some(RefInput::Constant(Box::new(t.clone()))),
                    None => Some(RefInput::Value(self.value_in(n, Layout::Nchw)?)),
                },
            });
        }
        let mut outputs = Vec::with_capacity(node.outputs.len());
        for name in &node.outputs {
            let shape = self.shape_of(name)?;
            if shape.is_empty() {
                return Err(kernel_error(
                    &node.name,
                    node.op_type(),
                    "scalar outputs are not supported by the CPU engine",
                ));
            }
            outputs.push(self.new_value(name, shape, Layout::Nchw));
        }
        self.steps.push(Step::Reference {
            node: Box::new(node.clone()),
            inputs,
            outputs,
        });
        Ok(())
    }
}

/// An INT8 convolution whose output is read only by INT8 convolutions, as their (NHWC) input, all
/// with one input scale, writes that output as s8 requantized in its epilogue: the readers skip
/// their quantizing pass and the f32 round trip through memory. A reader that quantizes to
/// [0, 127] (non-negative input) needs a producer whose epilogue ends non-negative.
fn keep_s8_between_int8_convs(values: &mut [Value], steps: &[Step], outputs: &[(IoDesc, usize)]) {
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); values.len()];
    for (s, step) in steps.iter().enumerate() {
        for (v, writes) in step_values(step) {
            if !writes {
                readers[v].push(s);
            }
        }
    }
    for step in steps {
        let Step::ConvInt8 { conv, output, .. } = step else {
            continue;
        };
        if outputs.iter().any(|(_, o)| o == output) || readers[*output].is_empty() {
            continue;
        }
        let epilogue = conv.spec().epilogue;
        let nonnegative = matches!(
            epilogue.activation,
            Activation::Relu | Activation::Relu6 | Activation::Sigmoid
        ) && epilogue.residual != ResidualAdd::AfterActivation;
        let mut scale = None;
        let all_int8 = readers[*output].iter().all(|&r| match &steps[r] {
            Step::ConvInt8 {
                conv: reader,
                input,
                input_nchw: false,
                residual,
                ..
            } if input == output && *residual != Some(*output) => {
                let s = reader.input_scale();
                let same = *scale.get_or_insert(s) == s;
                same && (nonnegative || !reader.nonnegative_input())
            }
            _ => false,
        });
        if all_int8 {
            values[*output].s8_scale = scale;
        }
    }
}

/// Gives every value an arena offset: a value lives from the step that writes it to the last step
/// that reads it; later values reuse freed space (first fit). Graph inputs live from the start and
/// outputs to the end. Returns the arena size per image, in floats.
fn assign_offsets(
    values: &mut [Value],
    steps: &[Step],
    inputs: &[(IoDesc, usize)],
    outputs: &[(IoDesc, usize)],
) -> usize {
    let n = steps.len();
    let mut liveness = Liveness::new(values.len());
    for (_, id) in inputs {
        liveness.touch(0, *id, true);
    }
    for (s, step) in steps.iter().enumerate() {
        for (v, writes) in step_values(step) {
            liveness.touch(s, v, writes);
        }
    }
    for (_, id) in outputs {
        liveness.touch(n, *id, false);
    }
    // Pad each value to 16 floats (64 bytes) so every one starts cache-line and SIMD aligned.
    let sizes: Vec<usize> = values
        .iter()
        .map(|v| v.floats(1).next_multiple_of(16))
        .collect();
    let (offsets, top) = liveness.first_fit(&sizes);
    for (value, offset) in values.iter_mut().zip(offsets) {
        if let Some(offset) = offset {
            value.offset = offset;
        }
    }
    top
}

/// The values a step touches, with whether it writes them.
pub fn step_values(step: &Step) -> Vec<(usize, bool)> {
    match step {
        Step::ToNhwc { src, dst } | Step::ToNchw { src, dst } => vec![(*src, false), (*dst, true)],
        Step::Conv {
            input,
            output,
            residual,
            ..
        }
        | Step::ConvInt8 {
            input,
            output,
            residual,
            ..
        } => {
            let mut v = vec![(*input, false), (*output, true)];
            v.extend(residual.map(|r| (r, false)));
            v
        }
        Step::ConvTranspose { input, output, .. }
        | Step::Pool { input, output, .. }
        | Step::GlobalPool { input, output, .. } => vec![(*input, false), (*output, true)],
        Step::Elementwise { inputs, output, .. } | Step::Concat { inputs, output, .. } => {
            let mut v: Vec<_> = inputs.iter().map(|i| (*i, false)).collect();
            v.push((*output, true));
            v
        }
        Step::Unary { input, output, .. }
        | Step::Reduce { input, output, .. }
        | Step::Rearrange { input, output, .. } => {
            vec![(*input, false), (*output, true)]
        }
        Step::Binary { a, b, output, .. } => {
            let mut v: Vec<_> = [a, b]
                .into_iter()
                .filter_map(|o| match o {
                    Operand::Value(id) => Some((*id, false)),
                    Operand::Constant(_) => None,
                })
                .collect();
            v.push((*output, true));
            v
        }
        Step::Reference {
            inputs, outputs, ..
        } => {
            let mut v: Vec<_> = inputs
                .iter()
                .filter_map(|i| match i {
                    Some(RefInput::Value(id)) => Some((*id, false)),
                    _ => None,
                })
                .collect();
            v.extend(outputs.iter().map(|o| (*o, true)));
            v
        }
    }
}

/// Stored kernel choice of a conv, for plans.
pub fn algorithm_from_name(name: &str) -> Option<ConvAlgorithm> {
    [
        ConvAlgorithm::Pointwise,
        ConvAlgorithm::Im2col,
        ConvAlgorithm::Winograd4x4,
        ConvAlgorithm::Winograd2x2,
        ConvAlgorithm::Depthwise,
    ]
    .into_iter()
    .find(|a| a.name() == name)
}
