//! IR → ONNX: writes any graph as a `ModelProto` of one chosen opset (13 to 21; 17 by default).
//! Names of the graph, nodes and tensors are kept; constants become initializers with `raw_data`.

use std::collections::HashSet;

use prost::Message;

use super::import::dtype_to_onnx;
use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_type, tensor_shape_proto, type_proto,
};
use crate::ir::*;

/// What to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// Default-domain opset, 13 to 21.
    pub opset: i64,
    pub producer_name: String,
    pub producer_version: String,
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions {
            opset: 17,
            producer_name: "tao-graph".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Serialised ONNX bytes of the graph.
pub fn export(graph: &Graph, options: &ExportOptions) -> Result<Vec<u8>> {
    Ok(export_model(graph, options)?.encode_to_vec())
}

fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// The `ModelProto` of the graph.
pub fn export_model(graph: &Graph, options: &ExportOptions) -> Result<ModelProto> {
    if !(13..=21).contains(&options.opset) {
        return Err(GraphError::InvalidGraph {
            detail: format!(
                "ONNX export supports opsets 13 to 21, not {}",
                options.opset
            ),
        });
    }
    graph.validate()?;
    let facts = graph.infer()?;
    let mut w = Writer {
        opset: options.opset,
        graph,
        facts: &facts,
        taken: all_names(graph),
        nodes: Vec::new(),
        extra_initializers: Vec::new(),
    };
    for node in &graph.nodes {
        w.node(node)?;
    }
    // Constants that became attributes (e.g. reduction axes before opset 18) are left out.
    let used: HashSet<&str> = w
        .nodes
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.outputs.iter().map(String::as_str))
        .collect();
    let mut initializer: Vec<TensorProto> = graph
        .constants
        .iter()
        .filter(|(name, _)| used.contains(name.as_str()))
        .map(|(name, t)| tensor_to_proto(name, t))
        .collect();
    initializer.append(&mut w.extra_initializers);
    let value_info = |name: &str| -> Result<ValueInfoProto> {
        let f = facts.get(name).ok_or_else(|| GraphError::UnknownTensor {
            name: name.to_string(),
            detail: "no type known for export".into(),
        })?;
        Ok(typed_value_info(name, f.dtype, &f.shape))
    };
    let input = graph
        .inputs
        .iter()
        .map(|i| typed_value_info(&i.name, i.dtype, &i.shape))
        .collect();
    let output = graph
        .outputs
        .iter()
        .map(|o| value_info(o))
        .collect::<Result<_>>()?;
    Ok(ModelProto {
        ir_version: ir_version_for(options.opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: options.opset,
        }],
        producer_name: options.producer_name.clone(),
        producer_version: options.producer_version.clone(),
        graph: Some(GraphProto {
            node: w.nodes,
            name: if graph.name.is_empty() {
                "graph".into()
            } else {
                graph.name.clone()
            },
            initializer,
            input,
            output,
            ..GraphProto::default()
        }),
        ..ModelProto::default()
    })
}

fn all_names(graph: &Graph) -> HashSet<String> {
    let mut s: HashSet<String> = graph.constants.keys().cloned().collect();
    s.extend(graph.inputs.iter().map(|i| i.name.clone()));
    for n in &graph.nodes {
        s.insert(n.name.clone());
        s.extend(n.outputs.iter().cloned());
    }
    s
}

fn typed_value_info(name: &str, dtype: DType, shape: &Shape) -> ValueInfoProto {
    use tensor_shape_proto::{Dimension, dimension::Value};
    let dim = shape
        .dims()
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n as i64),
                Dim::Symbolic(s) => Value::DimParam(s.clone()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dtype_to_onnx(dtype),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

/// An initializer with little-endian `raw_data`.
pub(crate) fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: dtype_to_onnx(t.dtype()),
        name: name.to_string(),
        raw_data: t.to_le_bytes(),
        ..TensorProto::default()
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: v,
        ..AttributeProto::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: v,
        ..AttributeProto::default()
    }
}

fn attr_ints(name: &str, v: impl IntoIterator<Item = i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.into_iter().collect(),
        ..AttributeProto::default()
    }
}

fn attr_usizes(name: &str, v: &[usize]) -> AttributeProto {
    attr_ints(name, v.iter().map(|&x| x as i64))
}

fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRING,
        s: v.as_bytes().to_vec(),
        ..AttributeProto::default()
    }
}

fn attr_tensor(name: &str, t: &Tensor) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::TENSOR,
        t: Some(tensor_to_proto("", t)),
        ..AttributeProto::default()
    }
}

fn auto_pad_name(p: AutoPad) -> &'static str {
    match p {
        AutoPad::NotSet => "NOTSET",
        AutoPad::SameUpper => "SAME_UPPER",
        AutoPad::SameLower => "SAME_LOWER",
        AutoPad::Valid => "VALID",
    }
}

struct Writer<'a> {
    opset: i64,
    graph: &'a Graph,
    facts: &'a Facts,
    taken: HashSet<String>,
    nodes: Vec<NodeProto>,
    extra_initializers: Vec<TensorProto>,
}

impl Writer<'_> {
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    fn err(&self, node: &Node, detail: impl Into<String>) -> GraphError {
        GraphError::InvalidNode {
            node: node.name.clone(),
            op: node.op_type().to_string(),
            detail: format!(
                "cannot export to ONNX opset {}: {}",
                self.opset,
                detail.into()
            ),
        }
    }

    /// Rank of the node's first input.
    fn rank(&self, node: &Node) -> Result<usize> {
        node.input(0)
            .and_then(|n| self.facts.get(n))
            .map(|f| f.shape.rank())
            .ok_or_else(|| self.err(node, "input rank unknown"))
    }

    /// The known value of an input (a constant or something inference folded).
    fn input_value(&self, node: &Node, i: usize) -> Option<Tensor> {
        let name = node.input(i)?;
        self.graph
            .constants
            .get(name)
            .cloned()
            .or_else(|| self.facts.get(name)?.value.as_deref().cloned())
    }

    fn emit(
        &mut self,
        name: &str,
        op_type: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: outputs,
            name: name.to_string(),
            op_type: op_type.to_string(),
            attribute,
            ..NodeProto::default()
        });
    }

    fn node(&mut self, node: &Node) -> Result<()> {
        let mut inputs: Vec<String> = node
            .inputs
            .iter()
            .map(|i| i.clone().unwrap_or_default())
            .collect();
        let outputs = node.outputs.clone();
        let mut attrs: Vec<AttributeProto> = Vec::new();
        let opset = self.opset;
        let op_type = node.op_type();
        match &node.op {
            Op::Conv(c) => {
                if let Some(k) = &c.kernel_shape {
                    attrs.push(attr_usizes("kernel_shape", k));
                }
                window_attrs(&mut attrs, &c.strides, &c.dilations, &c.pads, c.auto_pad);
                attrs.push(attr_int("group", c.group.max(1) as i64));
            }
            Op::ConvTranspose(c) => {
                if let Some(k) = &c.kernel_shape {
                    attrs.push(attr_usizes("kernel_shape", k));
                }
                window_attrs(&mut attrs, &c.strides, &c.dilations, &c.pads, c.auto_pad);
                attrs.push(attr_int("group", c.group.max(1) as i64));
                if !c.output_padding.is_empty() {
                    attrs.push(attr_usizes("output_padding", &c.output_padding));
                }
                if let Some(s) = &c.output_shape {
                    attrs.push(attr_usizes("output_shape", s));
                }
            }
            Op::BatchNormalization(b) => attrs.push(attr_float("epsilon", b.epsilon)),
            Op::Lrn(l) => {
                attrs.push(attr_int("size", l.size as i64));
                attrs.push(attr_float("alpha", l.alpha));
                attrs.push(attr_float("beta", l.beta));
                attrs.push(attr_float("bias", l.bias));
            }
            Op::Unary(u) => match *u {
                UnaryOp::LeakyRelu { alpha }
                | UnaryOp::Elu { alpha }
                | UnaryOp::ThresholdedRelu { alpha } => attrs.push(attr_float("alpha", alpha)),
                UnaryOp::Selu { alpha, gamma } => {
                    attrs.push(attr_float("alpha", alpha));
                    attrs.push(attr_float("gamma", gamma));
                }
                UnaryOp::HardSigmoid { alpha, beta } => {
                    attrs.push(attr_float("alpha", alpha));
                    attrs.push(attr_float("beta", beta));
                }
                _ => {}
            },
            Op::Binary(BinaryOp::Mod { fmod }) => attrs.push(attr_int("fmod", i64::from(*fmod))),
            Op::Binary(_) | Op::Variadic(_) | Op::Clip | Op::PRelu | Op::Where | Op::MatMul => {}
            Op::Pool(p)
                if p.kind == PoolKind::Average
                    && p.count_include_pad
                    && p.ceil_mode
                    && opset < 19 =>
            {
                return self.average_pool_count_corrected(node, p);
            }
            Op::Pool(p) => {
                attrs.push(attr_usizes("kernel_shape", &p.kernel_shape));
                let dilated = p.dilations.iter().any(|&d| d != 1);
                if p.kind == PoolKind::Average && dilated && opset < 19 {
                    return Err(self.err(node, "dilated AveragePool needs opset 19"));
                }
                // AveragePool has no dilations attribute before opset 19.
                let dilations: &[usize] = if p.kind == PoolKind::Average && opset < 19 {
                    &[]
                } else {
                    &p.dilations
                };
                window_attrs(&mut attrs, &p.strides, dilations, &p.pads, p.auto_pad);
                attrs.push(attr_int("ceil_mode", i64::from(p.ceil_mode)));
                if p.kind == PoolKind::Average {
                    attrs.push(attr_int(
                        "count_include_pad",
                        i64::from(p.count_include_pad),
                    ));
                }
            }
            Op::GlobalPool(_) => {}
            Op::Gemm(g) => {
                attrs.push(attr_float("alpha", g.alpha));
                attrs.push(attr_float("beta", g.beta));
                attrs.push(attr_int("transA", i64::from(g.trans_a)));
                attrs.push(attr_int("transB", i64::from(g.trans_b)));
            }
            Op::Softmax(s) => {
                let rank = self.rank(node)?;
                let axis = if s.axis < 0 {
                    s.axis + rank as i64
                } else {
                    s.axis
                };
                if s.coerce_to_2d && axis != rank as i64 - 1 {
                    return self.softmax_2d(node, s, axis);
                }
                attrs.push(attr_int("axis", s.axis));
            }
            Op::Reduce(r) => {
                if r.kind != ReduceKind::Sum && opset < 18 {
                    // Axes are an attribute before opset 18 (ReduceSum: before 13).
                    if node.input(1).is_some() {
                        let axes = self
                            .input_value(node, 1)
                            .ok_or_else(|| self.err(node, "reduction axes must be constant"))?;
                        if !axes.is_empty() {
                            attrs.push(attr_ints("axes", axes.to_i64_vec()));
                        } else if r.noop_with_empty_axes {
                            return Err(self.err(node, "noop_with_empty_axes needs opset 18"));
                        }
                    } else if r.noop_with_empty_axes {
                        return Err(self.err(node, "noop_with_empty_axes needs opset 18"));
                    }
                    inputs.truncate(1);
                } else {
                    attrs.push(attr_int(
                        "noop_with_empty_axes",
                        i64::from(r.noop_with_empty_axes),
                    ));
                }
                attrs.push(attr_int("keepdims", i64::from(r.keepdims)));
            }
            Op::ArgReduce(a) => {
                attrs.push(attr_int("axis", a.axis));
                attrs.push(attr_int("keepdims", i64::from(a.keepdims)));
                attrs.push(attr_int(
                    "select_last_index",
                    i64::from(a.select_last_index),
                ));
            }
            Op::Reshape(r) => {
                if r.allowzero {
                    if opset < 14 {
                        return Err(self.err(node, "allowzero needs opset 14"));
                    }
                    attrs.push(attr_int("allowzero", 1));
                }
            }
            Op::Flatten(f) => attrs.push(attr_int("axis", f.axis)),
            Op::Transpose(t) => {
                if !t.perm.is_empty() {
                    attrs.push(attr_usizes("perm", &t.perm));
                }
            }
            Op::Squeeze | Op::Unsqueeze | Op::Slice | Op::Expand | Op::Tile | Op::Identity => {}
            Op::Concat(c) => attrs.push(attr_int("axis", c.axis)),
            Op::Split(s) => {
                attrs.push(attr_int("axis", s.axis));
                if node.input(1).is_none() {
                    if opset >= 18 {
                        attrs.push(attr_int("num_outputs", outputs.len() as i64));
                    } else {
                        // Before opset 18 an equal split must divide evenly: write the sizes out.
                        let rank = self.rank(node)?;
                        let axis = if s.axis < 0 {
                            s.axis + rank as i64
                        } else {
                            s.axis
                        };
                        let sizes = outputs
                            .iter()
                            .map(|o| {
                                self.facts
                                    .get(o)
                                    .and_then(|f| f.shape.dims().get(axis as usize)?.fixed())
                                    .map(|d| d as i64)
                            })
                            .collect::<Option<Vec<i64>>>()
                            .ok_or_else(|| self.err(node, "split sizes unknown"))?;
                        let name = self.fresh(&format!("{}/split", node.name));
                        self.extra_initializers
                            .push(tensor_to_proto(&name, &Tensor::vec_i64(sizes)));
                        inputs.push(name);
                    }
                }
            }
            Op::Gather(g) => attrs.push(attr_int("axis", g.axis)),
            Op::Pad(p) => {
                let mode = match p.mode {
                    PadMode::Constant => "constant",
                    PadMode::Reflect => "reflect",
                    PadMode::Edge => "edge",
                    PadMode::Wrap if opset >= 19 => "wrap",
                    PadMode::Wrap => return Err(self.err(node, "wrap padding needs opset 19")),
                };
                attrs.push(attr_string("mode", mode));
                if node.input(3).is_some() && opset < 18 {
                    // Expand per-axis pads to all axes.
                    let (Some(pads), Some(axes)) =
                        (self.input_value(node, 1), self.input_value(node, 3))
                    else {
                        return Err(self.err(
                            node,
                            "pad axes need opset 18 unless pads and axes are constant",
                        ));
                    };
                    let rank = self.rank(node)?;
                    let (pads, axes) = (pads.to_i64_vec(), axes.to_i64_vec());
                    let mut full = vec![0i64; 2 * rank];
                    for (k, &a) in axes.iter().enumerate() {
                        let a = if a < 0 { a + rank as i64 } else { a } as usize;
                        if a >= rank || pads.len() != 2 * axes.len() {
                            return Err(self.err(node, "pad axes do not fit the input"));
                        }
                        full[a] = pads[k];
                        full[a + rank] = pads[k + axes.len()];
                    }
                    let name = self.fresh(&format!("{}/pads", node.name));
                    self.extra_initializers
                        .push(tensor_to_proto(&name, &Tensor::vec_i64(full)));
                    inputs[1] = name;
                    inputs.truncate(3);
                }
            }
            Op::Shape(s) => {
                if s.start != 0 || s.end.is_some() {
                    if opset < 15 {
                        return Err(self.err(node, "Shape start/end need opset 15"));
                    }
                    attrs.push(attr_int("start", s.start));
                    if let Some(e) = s.end {
                        attrs.push(attr_int("end", e));
                    }
                }
            }
            Op::Cast(c) => attrs.push(attr_int("to", i64::from(dtype_to_onnx(c.to)))),
            Op::ConstantOfShape(c) => attrs.push(attr_tensor("value", &c.value)),
            Op::Resize(r) => {
                let mode = match r.mode {
                    ResizeMode::Nearest => "nearest",
                    ResizeMode::Linear => "linear",
                    ResizeMode::Cubic => "cubic",
                };
                let coordinate = match r.coordinate_transform {
                    CoordinateTransform::HalfPixel => "half_pixel",
                    CoordinateTransform::HalfPixelSymmetric if opset >= 19 => {
                        "half_pixel_symmetric"
                    }
                    CoordinateTransform::HalfPixelSymmetric => {
                        return Err(self.err(node, "half_pixel_symmetric needs opset 19"));
                    }
                    CoordinateTransform::PytorchHalfPixel => "pytorch_half_pixel",
                    CoordinateTransform::AlignCorners => "align_corners",
                    CoordinateTransform::Asymmetric => "asymmetric",
                    CoordinateTransform::TfCropAndResize => "tf_crop_and_resize",
                };
                let nearest = match r.nearest_mode {
                    NearestMode::RoundPreferFloor => "round_prefer_floor",
                    NearestMode::RoundPreferCeil => "round_prefer_ceil",
                    NearestMode::Floor => "floor",
                    NearestMode::Ceil => "ceil",
                    NearestMode::Simple => self.simple_nearest(node)?,
                };
                attrs.push(attr_string("mode", mode));
                attrs.push(attr_string("coordinate_transformation_mode", coordinate));
                attrs.push(attr_string("nearest_mode", nearest));
                attrs.push(attr_float("cubic_coeff_a", r.cubic_coeff_a));
                attrs.push(attr_int("exclude_outside", i64::from(r.exclude_outside)));
                attrs.push(attr_float("extrapolation_value", r.extrapolation_value));
            }
        }
        while inputs.last().is_some_and(String::is_empty) {
            inputs.pop();
        }
        self.emit(&node.name, op_type, inputs, outputs, attrs);
        Ok(())
    }

    /// Upsample-style nearest rounding (floor when enlarging, ceil when shrinking) as one opset-13
    /// nearest_mode: needs constant scales that all enlarge or all shrink.
    fn simple_nearest(&self, node: &Node) -> Result<&'static str> {
        let scales = self
            .input_value(node, 2)
            .filter(|t| !t.is_empty())
            .map(|t| t.to_f32_vec());
        let Some(scales) = scales else {
            // Sizes given: compare output and input dims.
            let dims = |n: Option<&str>| {
                n.and_then(|n| self.facts.get(n))
                    .and_then(|f| f.shape.to_fixed())
            };
            let (Some(i), Some(o)) = (
                dims(node.input(0)),
                dims(node.outputs.first().map(String::as_str)),
            ) else {
                return Err(self.err(node, "legacy nearest rounding needs known scales"));
            };
            let scales: Vec<f32> = i
                .iter()
                .zip(&o)
                .map(|(&a, &b)| b as f32 / a.max(1) as f32)
                .collect();
            return pick_simple(&scales)
                .ok_or_else(|| self.err(node, "mixed up- and down-scaling"));
        };
        pick_simple(&scales).ok_or_else(|| self.err(node, "mixed up- and down-scaling"))
    }

    /// Before opset 19 ONNX Runtime divides every window of a count_include_pad pool by the whole
    /// kernel, also a ceil-mode window that runs past the end pad; the IR divides such a window by
    /// the part inside the padded input. The pool is written as it is, followed by a Mul with the
    /// constant per-position factor kernel / covered. (An explicit Pad would be fused back into the
    /// pool by ONNX Runtime's optimiser.)
    fn average_pool_count_corrected(&mut self, node: &Node, p: &Pool) -> Result<()> {
        let x = node
            .input(0)
            .ok_or_else(|| self.err(node, "no input"))?
            .to_string();
        let out = node
            .outputs
            .first()
            .cloned()
            .ok_or_else(|| self.err(node, "no output"))?;
        let spatial = self
            .facts
            .get(&x)
            .and_then(|f| {
                f.shape
                    .dims()
                    .get(2..)
                    .and_then(|d| Shape(d.to_vec()).to_fixed())
            })
            .ok_or_else(|| {
                self.err(
                    node,
                    "count_include_pad with ceil_mode needs known spatial dims",
                )
            })?;
        let mut g = p.geometry().map_err(|e| e.at(&node.name, node.op_type()))?;
        g.resolve_auto_pad(p.auto_pad, &spatial);
        // Per axis: how many kernel taps of each output position fall inside the padded input.
        let mut covered_per_axis: Vec<Vec<usize>> = Vec::new();
        for (axis, &size) in spatial.iter().enumerate() {
            let outputs = g
                .output_size(axis, size, true)
                .map_err(|e| e.at(&node.name, node.op_type()))?;
            let limit = size + g.pads_end[axis] + g.pads_begin[axis];
            covered_per_axis.push(
                (0..outputs)
                    .map(|o| {
                        (0..g.kernel[axis])
                            .filter(|t| o * g.strides[axis] + t * g.dilations[axis] < limit)
                            .count()
                    })
                    .collect(),
            );
        }
        let kernel: usize = g.kernel.iter().product();
        let out_spatial: Vec<usize> = covered_per_axis.iter().map(Vec::len).collect();
        let mut factors = Vec::with_capacity(out_spatial.iter().product());
        crate::ops::common::for_each_index(&out_spatial, |idx| {
            let covered: usize = idx
                .iter()
                .zip(&covered_per_axis)
                .map(|(&i, c)| c[i])
                .product();
            factors.push(kernel as f32 / covered.max(1) as f32);
        });
        let mut shape = vec![1, 1];
        shape.extend(&out_spatial);
        let factor = Tensor::from_f32(shape, factors)?;
        let factor_name = self.fresh(&format!("{}/count_correction", node.name));
        self.extra_initializers
            .push(tensor_to_proto(&factor_name, &factor));
        let pooled = self.fresh(&format!("{}/pooled", node.name));
        let mut attrs = vec![attr_usizes("kernel_shape", &p.kernel_shape)];
        window_attrs(&mut attrs, &p.strides, &[], &p.pads, p.auto_pad);
        attrs.push(attr_int("ceil_mode", 1));
        attrs.push(attr_int("count_include_pad", 1));
        self.emit(
            &node.name,
            "AveragePool",
            vec![x],
            vec![pooled.clone()],
            attrs,
        );
        let mul = self.fresh(&format!("{}/Mul", node.name));
        self.emit(&mul, "Mul", vec![pooled, factor_name], vec![out], vec![]);
        Ok(())
    }

    /// Opset < 13 Softmax over `[axis..]` as Flatten → Softmax(-1) → Reshape to the input shape.
    fn softmax_2d(&mut self, node: &Node, s: &Softmax, axis: i64) -> Result<()> {
        let x = node
            .input(0)
            .ok_or_else(|| self.err(node, "no input"))?
            .to_string();
        let out = node
            .outputs
            .first()
            .cloned()
            .ok_or_else(|| self.err(node, "no output"))?;
        let flat = self.fresh(&format!("{}/flat", node.name));
        let soft = self.fresh(&format!("{}/softmax2d", node.name));
        let shape = self.fresh(&format!("{}/shape", node.name));
        let kind = if s.log { "LogSoftmax" } else { "Softmax" };
        let n_shape = self.fresh(&format!("{}/Shape", node.name));
        let n_flat = self.fresh(&format!("{}/Flatten", node.name));
        let n_reshape = self.fresh(&format!("{}/Reshape", node.name));
        self.emit(
            &n_shape,
            "Shape",
            vec![x.clone()],
            vec![shape.clone()],
            vec![],
        );
        self.emit(
            &n_flat,
            "Flatten",
            vec![x],
            vec![flat.clone()],
            vec![attr_int("axis", axis)],
        );
        self.emit(
            &node.name,
            kind,
            vec![flat],
            vec![soft.clone()],
            vec![attr_int("axis", -1)],
        );
        self.emit(&n_reshape, "Reshape", vec![soft, shape], vec![out], vec![]);
        Ok(())
    }
}

fn pick_simple(scales: &[f32]) -> Option<&'static str> {
    let up = scales.iter().any(|&s| s > 1.0);
    let down = scales.iter().any(|&s| s < 1.0);
    match (up, down) {
        (true, true) => None,
        (false, true) => Some("ceil"),
        _ => Some("floor"),
    }
}

fn window_attrs(
    attrs: &mut Vec<AttributeProto>,
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    auto_pad: AutoPad,
) {
    if !strides.is_empty() {
        attrs.push(attr_usizes("strides", strides));
    }
    if !dilations.is_empty() {
        attrs.push(attr_usizes("dilations", dilations));
    }
    if auto_pad == AutoPad::NotSet {
        if !pads.is_empty() {
            attrs.push(attr_usizes("pads", pads));
        }
    } else {
        attrs.push(attr_string("auto_pad", auto_pad_name(auto_pad)));
    }
}
