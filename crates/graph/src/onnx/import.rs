//! ONNX → IR. Opsets 7 to 22 of the default domain. Attributes that later opsets turned into
//! inputs (Clip min/max, Slice starts/ends, Squeeze/Unsqueeze axes, Split, Pad, Reduce axes, Upsample
//! scales) become constant inputs, so the IR has one form of each op.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use prost::Message;

use super::proto::{
    AttributeProto, DATA_LOCATION_EXTERNAL, ModelProto, NodeProto, TensorProto, ValueInfoProto,
    attribute_type, data_type, tensor_shape_proto::dimension, type_proto,
};
use crate::ir::*;

/// Oldest default-domain opset the importer reads.
pub const MIN_OPSET: i64 = 7;
/// Newest default-domain opset the importer reads.
pub const MAX_OPSET: i64 = 22;

const FORMAT: &str = "ONNX";

fn malformed(detail: impl Into<String>) -> GraphError {
    GraphError::Malformed {
        format: FORMAT,
        detail: detail.into(),
    }
}

/// Reads an `.onnx` file.
pub fn import_file(path: impl AsRef<Path>) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| {
        GraphError::Malformed {
            format: FORMAT,
            detail: format!("cannot read: {e}"),
        }
        .in_file(path)
    })?;
    import(&bytes).map_err(|e| e.in_file(path))
}

/// Decodes ONNX `ModelProto` bytes into a graph.
pub fn import(bytes: &[u8]) -> Result<Graph> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| malformed(format!("protobuf decoding failed: {e}")))?;
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .ok_or_else(|| malformed("no opset_import for the default (ai.onnx) domain"))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(malformed(format!(
            "opset {opset} of the default domain is outside the supported range {MIN_OPSET}..={MAX_OPSET}"
        )));
    }
    let proto = model
        .graph
        .as_ref()
        .ok_or_else(|| malformed("the model has no graph"))?;

    let mut graph = Graph::new(proto.name.clone());
    graph.metadata = vec![
        ("format".into(), "onnx".into()),
        ("ir_version".into(), model.ir_version.to_string()),
        ("opset".into(), opset.to_string()),
        (
            "producer".into(),
            format!("{} {}", model.producer_name, model.producer_version)
                .trim()
                .to_string(),
        ),
    ];
    if !model.domain.is_empty() {
        graph.metadata.push(("domain".into(), model.domain.clone()));
    }

    for init in &proto.initializer {
        if init.name.is_empty() {
            return Err(malformed("an initializer has no name"));
        }
        let t = tensor_from_proto(init)?;
        graph.constants.insert(init.name.clone(), t);
    }
    for input in &proto.input {
        // Since IR version 4 initializers may also be listed as inputs (overridable defaults); they
        // stay constants here.
        if graph.constants.contains_key(&input.name) {
            continue;
        }
        graph.inputs.push(value_info(input)?);
    }
    let mut names = NameSource::new(proto);
    let mut ctx = Ctx {
        opset,
        graph: &mut graph,
        names: &mut names,
    };
    for (index, node) in proto.node.iter().enumerate() {
        ctx.convert(node, index)?;
    }
    graph.outputs = proto.output.iter().map(|o| o.name.clone()).collect();
    if graph.outputs.iter().any(String::is_empty) {
        return Err(malformed("a graph output has no name"));
    }
    graph.sort_topologically()?;
    graph.validate()?;
    if opset < 19 {
        legacy_average_pools(&mut graph)?;
    }
    Ok(graph)
}

/// Before opset 19, AveragePool with count_include_pad and ceil_mode divides a last window that runs
/// past the end padding by the full kernel size (ONNX Runtime's behaviour for those opsets). The
/// same result comes from enlarging the end pads until every window is whole and dropping
/// ceil_mode, which needs the input's spatial size.
fn legacy_average_pools(graph: &mut Graph) -> Result<()> {
    let affected: Vec<usize> = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            matches!(&n.op, Op::Pool(p) if p.kind == PoolKind::Average && p.count_include_pad && p.ceil_mode)
        })
        .map(|(i, _)| i)
        .collect();
    if affected.is_empty() {
        return Ok(());
    }
    let facts = graph.infer()?;
    for i in affected {
        let node = &mut graph.nodes[i];
        let spatial = node.input(0).and_then(|x| facts.get(x)).and_then(|f| {
            f.shape
                .dims()
                .get(2..)
                .and_then(|d| Shape(d.to_vec()).to_fixed())
        });
        let Op::Pool(pool) = &mut node.op else {
            continue;
        };
        let Some(spatial) = spatial else {
            return Err(GraphError::InvalidNode {
                node: node.name.clone(),
                op: "AveragePool".into(),
                detail: "count_include_pad with ceil_mode before opset 19 needs known spatial dims"
                    .into(),
            });
        };
        let mut geometry = pool
            .geometry()
            .map_err(|e| e.at(&node.name, "AveragePool"))?;
        geometry.resolve_auto_pad(pool.auto_pad, &spatial);
        let mut pads_end = geometry.pads_end.clone();
        for (axis, &size) in spatial.iter().enumerate() {
            let out = geometry
                .output_size(axis, size, true)
                .map_err(|e| e.at(&node.name, "AveragePool"))?;
            let extent = (geometry.kernel[axis] - 1) * geometry.dilations[axis] + 1;
            let needed = (out - 1) * geometry.strides[axis] + extent;
            let have = size + geometry.pads_begin[axis] + geometry.pads_end[axis];
            pads_end[axis] += needed.saturating_sub(have);
        }
        pool.pads = geometry
            .pads_begin
            .iter()
            .chain(&pads_end)
            .copied()
            .collect();
        pool.auto_pad = AutoPad::NotSet;
        pool.ceil_mode = false;
    }
    Ok(())
}

fn dtype_from_onnx(code: i32, what: &str) -> Result<DType> {
    Ok(match code {
        data_type::FLOAT => DType::F32,
        data_type::UINT8 => DType::U8,
        data_type::INT8 => DType::I8,
        data_type::INT16 => DType::I16,
        data_type::INT32 => DType::I32,
        data_type::INT64 => DType::I64,
        data_type::BOOL => DType::Bool,
        data_type::FLOAT16 => DType::F16,
        data_type::DOUBLE => DType::F64,
        other => {
            let name = match other {
                data_type::UNDEFINED => "UNDEFINED",
                data_type::STRING => "STRING",
                data_type::UINT16 => "UINT16",
                data_type::UINT32 => "UINT32",
                data_type::UINT64 => "UINT64",
                data_type::BFLOAT16 => "BFLOAT16",
                _ => "unknown",
            };
            return Err(GraphError::InvalidTensor {
                name: what.to_string(),
                detail: format!("element type {name} ({other}) is not supported"),
            });
        }
    })
}

/// The ONNX element type code of a dtype.
pub(crate) fn dtype_to_onnx(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => data_type::FLOAT,
        DType::F16 => data_type::FLOAT16,
        DType::F64 => data_type::DOUBLE,
        DType::I8 => data_type::INT8,
        DType::U8 => data_type::UINT8,
        DType::I16 => data_type::INT16,
        DType::I32 => data_type::INT32,
        DType::I64 => data_type::INT64,
        DType::Bool => data_type::BOOL,
    }
}

fn value_info(v: &ValueInfoProto) -> Result<ValueInfo> {
    if v.name.is_empty() {
        return Err(malformed("a graph input has no name"));
    }
    let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(GraphError::InputMismatch {
            input: v.name.clone(),
            detail: "graph input is not a tensor (or has no type)".into(),
        });
    };
    let dtype = dtype_from_onnx(tt.elem_type, &v.name)?;
    let dims = match &tt.shape {
        None => {
            return Err(GraphError::InputMismatch {
                input: v.name.clone(),
                detail: "graph input has no shape".into(),
            });
        }
        Some(s) => s
            .dim
            .iter()
            .enumerate()
            .map(|(axis, d)| match &d.value {
                Some(dimension::Value::DimValue(n)) if *n >= 0 => Dim::Fixed(*n as usize),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                _ => Dim::Symbolic(format!("{}[{axis}]", v.name)),
            })
            .collect(),
    };
    Ok(ValueInfo::new(v.name.clone(), dtype, Shape(dims)))
}

/// Converts an ONNX tensor (raw_data or typed fields) to an IR tensor.
pub fn tensor_from_proto(t: &TensorProto) -> Result<Tensor> {
    let name = if t.name.is_empty() {
        "<unnamed>"
    } else {
        t.name.as_str()
    };
    let invalid = |detail: String| GraphError::InvalidTensor {
        name: name.to_string(),
        detail,
    };
    if t.data_location == DATA_LOCATION_EXTERNAL || !t.external_data.is_empty() {
        return Err(invalid("external data files are not supported".into()));
    }
    let dtype = dtype_from_onnx(t.data_type, name)?;
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| invalid(format!("negative dim {d} in {:?}", t.dims)))
        })
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid(format!("dims {:?} overflow", t.dims)))?;
    let located = |e: GraphError| match e {
        GraphError::InvalidTensor { detail, .. } => invalid(detail),
        other => other,
    };
    if !t.raw_data.is_empty() || count == 0 {
        return Tensor::from_le_bytes(dtype, shape, &t.raw_data).map_err(located);
    }
    let typed_len = match dtype {
        DType::F32 => t.float_data.len(),
        DType::F64 => t.double_data.len(),
        DType::I64 => t.int64_data.len(),
        _ => t.int32_data.len(),
    };
    if typed_len != count {
        return Err(invalid(format!(
            "holds {typed_len} {dtype} values, dims {:?} need {count}",
            t.dims
        )));
    }
    let i32s = &t.int32_data;
    let data = match dtype {
        DType::F32 => TensorData::F32(t.float_data.clone()),
        DType::F64 => TensorData::F64(t.double_data.clone()),
        DType::I64 => TensorData::I64(t.int64_data.clone()),
        DType::I32 => TensorData::I32(i32s.clone()),
        DType::I16 => TensorData::I16(i32s.iter().map(|&v| v as i16).collect()),
        DType::I8 => TensorData::I8(i32s.iter().map(|&v| v as i8).collect()),
        DType::U8 => TensorData::U8(i32s.iter().map(|&v| v as u8).collect()),
        DType::Bool => TensorData::Bool(i32s.iter().map(|&v| v != 0).collect()),
        // float16 values are stored as their bit patterns in int32_data.
        DType::F16 => TensorData::F16(
            i32s.iter()
                .map(|&v| half::f16::from_bits(v as u16))
                .collect(),
        ),
    };
    Tensor::new(shape, data).map_err(located)
}

/// Hands out tensor names that do not collide with any name of the source graph.
struct NameSource {
    taken: HashSet<String>,
}

impl NameSource {
    fn new(g: &super::proto::GraphProto) -> NameSource {
        let mut taken: HashSet<String> = HashSet::new();
        taken.extend(g.initializer.iter().map(|t| t.name.clone()));
        taken.extend(g.input.iter().map(|t| t.name.clone()));
        for n in &g.node {
            taken.extend(n.output.iter().cloned());
            taken.insert(n.name.clone());
        }
        NameSource { taken }
    }

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
}

/// Typed access to one node's attributes.
struct Attrs<'a> {
    node: &'a str,
    op: &'a str,
    map: BTreeMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attrs<'a> {
    fn new(node: &'a str, proto: &'a NodeProto) -> Attrs<'a> {
        Attrs {
            node,
            op: &proto.op_type,
            map: proto
                .attribute
                .iter()
                .map(|a| (a.name.as_str(), a))
                .collect(),
        }
    }

    fn err(&self, attr: &str, detail: impl Into<String>) -> GraphError {
        GraphError::InvalidAttribute {
            node: self.node.to_string(),
            op: self.op.to_string(),
            attr: attr.to_string(),
            detail: detail.into(),
        }
    }

    fn get(&self, name: &str, ty: i32) -> Result<Option<&'a AttributeProto>> {
        match self.map.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == ty || a.r#type == attribute_type::UNDEFINED => Ok(Some(a)),
            Some(a) => Err(self.err(
                name,
                format!("has attribute type {}, expected {ty}", a.r#type),
            )),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    fn int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.get(name, attribute_type::INT)?.map(|a| a.i))
    }

    fn int_or(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        match self.int(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(self.err(name, format!("must be 0 or 1, got {v}"))),
        }
    }

    fn float_or(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self
            .get(name, attribute_type::FLOAT)?
            .map_or(default, |a| a.f))
    }

    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self
            .get(name, attribute_type::INTS)?
            .map(|a| a.ints.clone()))
    }

    fn floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self
            .get(name, attribute_type::FLOATS)?
            .map(|a| a.floats.clone()))
    }

    fn usizes(&self, name: &str) -> Result<Option<Vec<usize>>> {
        self.ints(name)?
            .map(|v| {
                v.iter()
                    .map(|&x| {
                        usize::try_from(x)
                            .map_err(|_| self.err(name, format!("negative value {x}")))
                    })
                    .collect()
            })
            .transpose()
    }

    fn string(&self, name: &str) -> Result<Option<String>> {
        self.get(name, attribute_type::STRING)?
            .map(|a| String::from_utf8(a.s.clone()).map_err(|_| self.err(name, "is not UTF-8")))
            .transpose()
    }

    fn string_or(&self, name: &str, default: &str) -> Result<String> {
        Ok(self.string(name)?.unwrap_or_else(|| default.to_string()))
    }

    fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        match self.get(name, attribute_type::TENSOR)? {
            None => Ok(None),
            Some(a) => {
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| self.err(name, "holds no tensor"))?;
                tensor_from_proto(t).map(Some)
            }
        }
    }

    fn auto_pad(&self) -> Result<AutoPad> {
        Ok(match self.string_or("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => return Err(self.err("auto_pad", format!("unknown value `{other}`"))),
        })
    }
}

struct Ctx<'g> {
    opset: i64,
    graph: &'g mut Graph,
    names: &'g mut NameSource,
}

impl Ctx<'_> {
    /// Adds a constant with a fresh name derived from the node and returns the name.
    fn constant(&mut self, node: &str, what: &str, t: Tensor) -> Option<String> {
        let name = self.names.fresh(&format!("{node}/{what}"));
        self.graph.constants.insert(name.clone(), t);
        Some(name)
    }

    fn convert(&mut self, p: &NodeProto, index: usize) -> Result<()> {
        let op_type = p.op_type.as_str();
        let name = if p.name.is_empty() {
            self.names.fresh(&format!("{op_type}_{index}"))
        } else {
            p.name.clone()
        };
        if !(p.domain.is_empty() || p.domain == "ai.onnx") {
            return Err(GraphError::UnsupportedOp {
                node: name,
                op: op_type.to_string(),
                domain: p.domain.clone(),
            });
        }
        let a = Attrs::new(&name, p);
        let mut inputs: Vec<Option<String>> = p
            .input
            .iter()
            .map(|s| if s.is_empty() { None } else { Some(s.clone()) })
            .collect();
        let mut outputs = p.output.clone();
        let opset = self.opset;
        let unary = |u: UnaryOp| Ok::<Op, GraphError>(Op::Unary(u));

        let op = match op_type {
            "Constant" => {
                let t = constant_value(&a)?;
                let out = p.output.first().filter(|o| !o.is_empty()).ok_or_else(|| {
                    GraphError::InvalidNode {
                        node: name.clone(),
                        op: op_type.into(),
                        detail: "has no output".into(),
                    }
                })?;
                self.graph.constants.insert(out.clone(), t);
                return Ok(());
            }
            "Conv" => Op::Conv(Conv {
                kernel_shape: a.usizes("kernel_shape")?,
                strides: a.usizes("strides")?.unwrap_or_default(),
                dilations: a.usizes("dilations")?.unwrap_or_default(),
                pads: a.usizes("pads")?.unwrap_or_default(),
                auto_pad: a.auto_pad()?,
                group: positive(&a, "group", a.int_or("group", 1)?)?,
            }),
            "ConvTranspose" => Op::ConvTranspose(ConvTranspose {
                kernel_shape: a.usizes("kernel_shape")?,
                strides: a.usizes("strides")?.unwrap_or_default(),
                dilations: a.usizes("dilations")?.unwrap_or_default(),
                pads: a.usizes("pads")?.unwrap_or_default(),
                auto_pad: a.auto_pad()?,
                group: positive(&a, "group", a.int_or("group", 1)?)?,
                output_padding: a.usizes("output_padding")?.unwrap_or_default(),
                output_shape: a.usizes("output_shape")?,
            }),
            "BatchNormalization" => {
                if a.bool_or("training_mode", false)? {
                    return Err(a.err("training_mode", "training mode is not supported"));
                }
                if opset < 9 && !a.bool_or("spatial", true)? {
                    return Err(a.err("spatial", "spatial=0 is not supported"));
                }
                // Inference keeps only Y; running-mean/var outputs exist only in training graphs.
                outputs.truncate(1);
                Op::BatchNormalization(BatchNormalization {
                    epsilon: a.float_or("epsilon", 1e-5)?,
                })
            }
            "LRN" => Op::Lrn(Lrn {
                size: positive(
                    &a,
                    "size",
                    a.int("size")?.ok_or_else(|| a.err("size", "is required"))?,
                )?,
                alpha: a.float_or("alpha", 1e-4)?,
                beta: a.float_or("beta", 0.75)?,
                bias: a.float_or("bias", 1.0)?,
            }),
            "Relu" => unary(UnaryOp::Relu)?,
            "Sigmoid" => unary(UnaryOp::Sigmoid)?,
            "Tanh" => unary(UnaryOp::Tanh)?,
            "Exp" => unary(UnaryOp::Exp)?,
            "Log" => unary(UnaryOp::Log)?,
            "Sqrt" => unary(UnaryOp::Sqrt)?,
            "Reciprocal" => unary(UnaryOp::Reciprocal)?,
            "Neg" => unary(UnaryOp::Neg)?,
            "Abs" => unary(UnaryOp::Abs)?,
            "Softplus" => unary(UnaryOp::Softplus)?,
            "Softsign" => unary(UnaryOp::Softsign)?,
            "Floor" => unary(UnaryOp::Floor)?,
            "Ceil" => unary(UnaryOp::Ceil)?,
            "Round" => unary(UnaryOp::Round)?,
            "Sign" => unary(UnaryOp::Sign)?,
            "Sin" => unary(UnaryOp::Sin)?,
            "Cos" => unary(UnaryOp::Cos)?,
            "Tan" => unary(UnaryOp::Tan)?,
            "Erf" => unary(UnaryOp::Erf)?,
            "Not" => unary(UnaryOp::Not)?,
            "HardSwish" => unary(UnaryOp::HardSwish)?,
            "LeakyRelu" => unary(UnaryOp::LeakyRelu {
                alpha: a.float_or("alpha", 0.01)?,
            })?,
            "Elu" => unary(UnaryOp::Elu {
                alpha: a.float_or("alpha", 1.0)?,
            })?,
            "Selu" => unary(UnaryOp::Selu {
                alpha: a.float_or("alpha", 1.673_263_2)?,
                gamma: a.float_or("gamma", 1.050_701)?,
            })?,
            "HardSigmoid" => unary(UnaryOp::HardSigmoid {
                alpha: a.float_or("alpha", 0.2)?,
                beta: a.float_or("beta", 0.5)?,
            })?,
            "ThresholdedRelu" => unary(UnaryOp::ThresholdedRelu {
                alpha: a.float_or("alpha", 1.0)?,
            })?,
            "Clip" => {
                if opset < 11 {
                    let lo = a.float_or("min", f32::MIN)?;
                    let hi = a.float_or("max", f32::MAX)?;
                    let lo = self.constant(&name, "min", Tensor::scalar_f32(lo));
                    let hi = self.constant(&name, "max", Tensor::scalar_f32(hi));
                    inputs.truncate(1);
                    inputs.extend([lo, hi]);
                }
                Op::Clip
            }
            "PRelu" => Op::PRelu,
            "Add" => Op::Binary(BinaryOp::Add),
            "Sub" => Op::Binary(BinaryOp::Sub),
            "Mul" => Op::Binary(BinaryOp::Mul),
            "Div" => Op::Binary(BinaryOp::Div),
            "Pow" => Op::Binary(BinaryOp::Pow),
            "Mod" => Op::Binary(BinaryOp::Mod {
                fmod: a.bool_or("fmod", false)?,
            }),
            "Equal" => Op::Binary(BinaryOp::Equal),
            "Less" => Op::Binary(BinaryOp::Less),
            "LessOrEqual" => Op::Binary(BinaryOp::LessOrEqual),
            "Greater" => Op::Binary(BinaryOp::Greater),
            "GreaterOrEqual" => Op::Binary(BinaryOp::GreaterOrEqual),
            "And" => Op::Binary(BinaryOp::And),
            "Or" => Op::Binary(BinaryOp::Or),
            "Xor" => Op::Binary(BinaryOp::Xor),
            "Min" => Op::Variadic(VariadicOp::Min),
            "Max" => Op::Variadic(VariadicOp::Max),
            "Sum" => Op::Variadic(VariadicOp::Sum),
            "Mean" => Op::Variadic(VariadicOp::Mean),
            "Where" => Op::Where,
            "MaxPool" | "AveragePool" => {
                let kind = if op_type == "MaxPool" {
                    PoolKind::Max
                } else {
                    PoolKind::Average
                };
                if kind == PoolKind::Max && a.int_or("storage_order", 0)? != 0 && outputs.len() > 1
                {
                    return Err(a.err("storage_order", "column-major indices are not supported"));
                }
                Op::Pool(Pool {
                    kind,
                    kernel_shape: a
                        .usizes("kernel_shape")?
                        .ok_or_else(|| a.err("kernel_shape", "is required"))?,
                    strides: a.usizes("strides")?.unwrap_or_default(),
                    dilations: a.usizes("dilations")?.unwrap_or_default(),
                    pads: a.usizes("pads")?.unwrap_or_default(),
                    auto_pad: a.auto_pad()?,
                    ceil_mode: a.bool_or("ceil_mode", false)?,
                    count_include_pad: a.bool_or("count_include_pad", false)?,
                })
            }
            "GlobalAveragePool" => Op::GlobalPool(PoolKind::Average),
            "GlobalMaxPool" => Op::GlobalPool(PoolKind::Max),
            "Gemm" => Op::Gemm(Gemm {
                alpha: a.float_or("alpha", 1.0)?,
                beta: a.float_or("beta", 1.0)?,
                trans_a: a.bool_or("transA", false)?,
                trans_b: a.bool_or("transB", false)?,
            }),
            "MatMul" => Op::MatMul,
            "Softmax" | "LogSoftmax" => Op::Softmax(Softmax {
                axis: a.int_or("axis", if opset < 13 { 1 } else { -1 })?,
                log: op_type == "LogSoftmax",
                coerce_to_2d: opset < 13,
            }),
            "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => {
                let kind = match op_type {
                    "ReduceSum" => ReduceKind::Sum,
                    "ReduceMean" => ReduceKind::Mean,
                    "ReduceMax" => ReduceKind::Max,
                    "ReduceMin" => ReduceKind::Min,
                    "ReduceProd" => ReduceKind::Prod,
                    "ReduceL1" => ReduceKind::L1,
                    "ReduceL2" => ReduceKind::L2,
                    "ReduceLogSum" => ReduceKind::LogSum,
                    "ReduceLogSumExp" => ReduceKind::LogSumExp,
                    _ => ReduceKind::SumSquare,
                };
                // ReduceSum took axes as an input from opset 13, the others from opset 18.
                let axes_are_input = if kind == ReduceKind::Sum {
                    opset >= 13
                } else {
                    opset >= 18
                };
                if !axes_are_input {
                    inputs.truncate(1);
                    if let Some(axes) = a.ints("axes")? {
                        let c = self.constant(&name, "axes", Tensor::vec_i64(axes));
                        inputs.push(c);
                    }
                }
                Op::Reduce(Reduce {
                    kind,
                    keepdims: a.bool_or("keepdims", true)?,
                    noop_with_empty_axes: a.bool_or("noop_with_empty_axes", false)?,
                })
            }
            "ArgMax" | "ArgMin" => Op::ArgReduce(ArgReduce {
                kind: if op_type == "ArgMax" {
                    ArgKind::Max
                } else {
                    ArgKind::Min
                },
                axis: a.int_or("axis", 0)?,
                keepdims: a.bool_or("keepdims", true)?,
                select_last_index: a.bool_or("select_last_index", false)?,
            }),
            "Reshape" => Op::Reshape(Reshape {
                allowzero: a.bool_or("allowzero", false)?,
            }),
            "Flatten" => Op::Flatten(Flatten {
                axis: a.int_or("axis", 1)?,
            }),
            "Transpose" => Op::Transpose(Transpose {
                perm: a.usizes("perm")?.unwrap_or_default(),
            }),
            "Squeeze" | "Unsqueeze" => {
                if opset < 13 {
                    inputs.truncate(1);
                    match a.ints("axes")? {
                        Some(axes) => {
                            let c = self.constant(&name, "axes", Tensor::vec_i64(axes));
                            inputs.push(c);
                        }
                        None if op_type == "Unsqueeze" => return Err(a.err("axes", "is required")),
                        None => {}
                    }
                }
                if op_type == "Squeeze" {
                    Op::Squeeze
                } else {
                    Op::Unsqueeze
                }
            }
            "Concat" => Op::Concat(Concat {
                axis: a.int("axis")?.ok_or_else(|| a.err("axis", "is required"))?,
            }),
            "Slice" => {
                if opset < 10 {
                    let starts = a
                        .ints("starts")?
                        .ok_or_else(|| a.err("starts", "is required"))?;
                    let ends = a
                        .ints("ends")?
                        .ok_or_else(|| a.err("ends", "is required"))?;
                    inputs.truncate(1);
                    let s = self.constant(&name, "starts", Tensor::vec_i64(starts));
                    let e = self.constant(&name, "ends", Tensor::vec_i64(ends));
                    inputs.extend([s, e]);
                    if let Some(axes) = a.ints("axes")? {
                        let c = self.constant(&name, "axes", Tensor::vec_i64(axes));
                        inputs.push(c);
                    }
                }
                Op::Slice
            }
            "Split" => {
                if opset < 13 {
                    inputs.truncate(1);
                    if let Some(split) = a.ints("split")? {
                        let c = self.constant(&name, "split", Tensor::vec_i64(split));
                        inputs.push(c);
                    }
                }
                if let Some(n) = a.int("num_outputs")?
                    && n != outputs.len() as i64
                {
                    return Err(a.err(
                        "num_outputs",
                        format!("is {n} but the node has {} outputs", outputs.len()),
                    ));
                }
                Op::Split(Split {
                    axis: a.int_or("axis", 0)?,
                })
            }
            "Gather" => Op::Gather(Gather {
                axis: a.int_or("axis", 0)?,
            }),
            "Pad" => {
                let mode = match a.string_or("mode", "constant")?.as_str() {
                    "constant" => PadMode::Constant,
                    "reflect" => PadMode::Reflect,
                    "edge" => PadMode::Edge,
                    "wrap" => PadMode::Wrap,
                    other => return Err(a.err("mode", format!("unknown value `{other}`"))),
                };
                if opset < 11 {
                    let pads = a
                        .ints("pads")?
                        .or(a.ints("paddings")?)
                        .ok_or_else(|| a.err("pads", "is required"))?;
                    let value = a.float_or("value", 0.0)?;
                    inputs.truncate(1);
                    let p = self.constant(&name, "pads", Tensor::vec_i64(pads));
                    let v = self.constant(&name, "value", Tensor::scalar_f32(value));
                    inputs.extend([p, v]);
                }
                Op::Pad(Pad { mode })
            }
            "Expand" => Op::Expand,
            "Tile" => Op::Tile,
            "Shape" => Op::Shape(ShapeOf {
                start: a.int_or("start", 0)?,
                end: a.int("end")?,
            }),
            "Cast" => {
                let to = a.int("to")?.ok_or_else(|| a.err("to", "is required"))?;
                let to =
                    i32::try_from(to).map_err(|_| a.err("to", format!("unknown type {to}")))?;
                Op::Cast(Cast {
                    to: dtype_from_onnx(to, &name).map_err(|e| a.err("to", e.to_string()))?,
                })
            }
            "Identity" => Op::Identity,
            "Dropout" => {
                // Inference: Dropout passes its input through; the mask output is not produced.
                inputs.truncate(1);
                outputs.truncate(1);
                Op::Identity
            }
            "ConstantOfShape" => Op::ConstantOfShape(ConstantOfShape {
                value: a
                    .tensor("value")?
                    .unwrap_or_else(|| Tensor::scalar_f32(0.0)),
            }),
            "Resize" | "Upsample" => {
                let mode = match a.string_or("mode", "nearest")?.as_str() {
                    "nearest" => ResizeMode::Nearest,
                    "linear" | "bilinear" => ResizeMode::Linear,
                    "cubic" if op_type == "Resize" => ResizeMode::Cubic,
                    other => return Err(a.err("mode", format!("unknown value `{other}`"))),
                };
                let legacy = op_type == "Upsample" || opset < 11;
                if legacy {
                    // Upsample and Resize-10: X, scales; asymmetric coordinates.
                    let scales = if op_type == "Upsample" && opset < 9 {
                        let s = a
                            .floats("scales")?
                            .ok_or_else(|| a.err("scales", "is required"))?;
                        self.constant(&name, "scales", Tensor::vec_f32(s))
                    } else {
                        inputs.get(1).cloned().flatten()
                    };
                    inputs = vec![inputs.first().cloned().flatten(), None, scales];
                    Op::Resize(Resize {
                        mode,
                        coordinate_transform: CoordinateTransform::Asymmetric,
                        nearest_mode: NearestMode::Simple,
                        ..Resize::default()
                    })
                } else {
                    if a.bool_or("antialias", false)? {
                        return Err(a.err("antialias", "antialiasing is not supported"));
                    }
                    if a.has("axes") {
                        return Err(a.err("axes", "resizing a subset of axes is not supported"));
                    }
                    if a.string_or("keep_aspect_ratio_policy", "stretch")? != "stretch" {
                        return Err(
                            a.err("keep_aspect_ratio_policy", "only `stretch` is supported")
                        );
                    }
                    let coordinate_transform = match a
                        .string_or("coordinate_transformation_mode", "half_pixel")?
                        .as_str()
                    {
                        "half_pixel" => CoordinateTransform::HalfPixel,
                        "half_pixel_symmetric" => CoordinateTransform::HalfPixelSymmetric,
                        "pytorch_half_pixel" => CoordinateTransform::PytorchHalfPixel,
                        "align_corners" => CoordinateTransform::AlignCorners,
                        "asymmetric" => CoordinateTransform::Asymmetric,
                        "tf_crop_and_resize" => CoordinateTransform::TfCropAndResize,
                        other => {
                            return Err(a.err(
                                "coordinate_transformation_mode",
                                format!("unknown value `{other}`"),
                            ));
                        }
                    };
                    let nearest_mode = match a
                        .string_or("nearest_mode", "round_prefer_floor")?
                        .as_str()
                    {
                        "round_prefer_floor" => NearestMode::RoundPreferFloor,
                        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
                        "floor" => NearestMode::Floor,
                        "ceil" => NearestMode::Ceil,
                        other => {
                            return Err(a.err("nearest_mode", format!("unknown value `{other}`")));
                        }
                    };
                    Op::Resize(Resize {
                        mode,
                        coordinate_transform,
                        nearest_mode,
                        cubic_coeff_a: a.float_or("cubic_coeff_a", -0.75)?,
                        exclude_outside: a.bool_or("exclude_outside", false)?,
                        extrapolation_value: a.float_or("extrapolation_value", 0.0)?,
                    })
                }
            }
            other => {
                return Err(GraphError::UnsupportedOp {
                    node: name,
                    op: other.to_string(),
                    domain: p.domain.clone(),
                });
            }
        };
        // Trailing absent inputs carry no meaning.
        while inputs.last().is_some_and(Option::is_none) {
            inputs.pop();
        }
        // Trailing unnamed outputs are not produced.
        while outputs.last().is_some_and(String::is_empty) {
            outputs.pop();
        }
        self.graph
            .nodes
            .push(Node::with_optional_inputs(name, op, inputs, outputs));
        Ok(())
    }
}

fn positive(a: &Attrs<'_>, attr: &str, v: i64) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| a.err(attr, format!("must be positive, got {v}")))
}

/// The tensor a Constant node holds, from whichever value attribute it uses.
fn constant_value(a: &Attrs<'_>) -> Result<Tensor> {
    if let Some(t) = a.tensor("value")? {
        return Ok(t);
    }
    if let Some(f) = a.get("value_float", attribute_type::FLOAT)? {
        return Ok(Tensor::scalar_f32(f.f));
    }
    if let Some(v) = a.floats("value_floats")? {
        return Ok(Tensor::vec_f32(v));
    }
    if let Some(i) = a.int("value_int")? {
        return Ok(Tensor::scalar_i64(i));
    }
    if let Some(v) = a.ints("value_ints")? {
        return Ok(Tensor::vec_i64(v));
    }
    Err(a.err(
        "value",
        "no supported value attribute (value, value_float(s), value_int(s))",
    ))
}
