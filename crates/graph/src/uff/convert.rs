//! Lowering of each UFF op to IR ops (ONNX semantics).
//!
//! Tensors keep the layout the file stores them in, so every op whose meaning does not depend on the
//! layout (element-wise maths, reshapes, concatenation, slicing, ...) maps one to one with the file's
//! axes. Ops that carry `inputs_orders` (Conv, Pool, BatchNorm, Softmax, ...) get their data
//! transposed into the canonical NCHW order and back when the file's order is different (NHWC), and
//! their filters permuted into OIHW at import time.

use std::collections::HashMap;

use super::builder::Builder;
use super::document::{ElemType, NodeView};
use super::error::{Result, UffError};
use super::orders;
use crate::ir::{
    ArgKind, ArgReduce, AutoPad, BatchNormalization, BinaryOp, Cast, Concat, Conv, ConvTranspose,
    DType, Dim, Flatten, Gather, Gemm, GraphError, Op, Pad, PadMode, Pool, PoolKind, Reduce,
    ReduceKind, Reshape, Shape, ShapeOf, Softmax, Tensor, TensorFact, Transpose, UnaryOp,
    VariadicOp,
};

/// TensorFlow's defaults where a UFF writer leaves a parameter out.
const DEFAULT_LEAKY_RELU_ALPHA: f64 = 0.2;
const DEFAULT_BATCH_NORM_EPSILON: f64 = 1e-3;
const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_GAMMA: f32 = 1.050_701;

/// Lowers one UFF node. `consumers` counts the readers of every tensor in the file, so a filter that
/// only one conv reads can be rewritten in place under its own name.
pub(crate) fn lower(
    b: &mut Builder,
    view: &NodeView<'_, '_>,
    consumers: &HashMap<&str, usize>,
) -> Result<()> {
    let mut node = Lowering { b, view, consumers };
    let op = view.op();
    match op {
        "Const" => node.constant(),
        "Identity" => node.simple(Op::Identity, 1),
        "Conv" => node.conv(),
        "ConvTranspose" => node.conv_transpose(),
        "Pool" => node.pool(),
        "FullyConnected" => node.fully_connected(),
        "Binary" => node.binary(),
        "Unary" => node.unary(),
        "Activation" => node.activation(),
        "LeakyRelu" => {
            let alpha = view
                .float_field("alpha")?
                .unwrap_or(DEFAULT_LEAKY_RELU_ALPHA) as f32;
            node.simple(Op::Unary(UnaryOp::LeakyRelu { alpha }), 1)
        }
        "Softmax" => node.softmax(),
        "BatchNorm" => node.batch_norm(),
        "Reshape" => node.reshape(),
        "Flatten" => node.simple(Op::Flatten(Flatten { axis: 1 }), 1),
        "Transpose" => node.transpose(),
        "Squeeze" => node.squeeze(),
        "ExpandDims" => node.expand_dims(),
        "Concat" => node.concat(),
        "Stack" => node.stack(),
        "Pad" => node.pad(),
        "StridedSlice" => node.strided_slice(),
        "Shape" => node.shape(),
        "Reduce" => node.reduce(),
        "ArgMax" | "ArgMin" => node.arg_reduce(),
        "Gather" | "GatherV2" => node.gather(),
        // Input and MarkOutput become the graph's inputs and outputs (see `super::import`).
        "Input" | "MarkOutput" => Ok(()),
        custom if custom.starts_with('_') => Err(UffError::CustomOp {
            node: view.name().to_owned(),
            op: custom.to_owned(),
        }),
        other => Err(UffError::UnsupportedOp {
            node: view.name().to_owned(),
            op: other.to_owned(),
        }),
    }
}

struct Lowering<'a, 'v, 'd, 'm> {
    b: &'a mut Builder,
    view: &'v NodeView<'d, 'm>,
    consumers: &'a HashMap<&'a str, usize>,
}

impl Lowering<'_, '_, '_, '_> {
    fn name(&self) -> &str {
        self.view.name()
    }

    fn ir(&self, source: GraphError) -> UffError {
        UffError::Ir {
            node: self.view.name().to_owned(),
            op: self.view.op().to_owned(),
            source: Box::new(source),
        }
    }

    /// Input tensor `i` (a UFF node name), checking the count.
    fn input(&self, i: usize) -> Result<String> {
        self.view.input_node(i).map(|n| n.id.clone())
    }

    fn expect_inputs(&self, count: usize) -> Result<()> {
        let n = self.view.inputs().len();
        if n == count {
            Ok(())
        } else {
            Err(self
                .view
                .bad_node(format!("has {n} inputs, expected {count}")))
        }
    }

    fn fact(&self, tensor: &str) -> Result<TensorFact> {
        self.b.fact(tensor).cloned().ok_or_else(|| {
            self.view
                .bad_node(format!("input `{tensor}` has no known type and shape"))
        })
    }

    fn rank(&self, tensor: &str) -> Result<usize> {
        Ok(self.fact(tensor)?.shape.rank())
    }

    /// The value of input `tensor`, which this op needs at import time.
    fn known(&self, tensor: &str, what: &str) -> Result<Tensor> {
        self.b.known_value(tensor).cloned().ok_or_else(|| {
            self.view.bad_node(format!(
                "{what} `{tensor}` must be a constant (or computable from constants at import time)"
            ))
        })
    }

    fn known_ints(&self, tensor: &str, what: &str) -> Result<Vec<i64>> {
        let t = self.known(tensor, what)?;
        if t.dtype().is_integer() {
            Ok(t.to_i64_vec())
        } else {
            Err(self.view.bad_node(format!(
                "{what} `{tensor}` must hold integers, it holds {}",
                t.dtype()
            )))
        }
    }

    /// Adds an IR node under this UFF node's name, producing `output`.
    fn emit(&mut self, op: Op, inputs: Vec<Option<String>>, output: &str) -> Result<()> {
        // Every IR node is named after the tensor it produces: the node carrying the UFF node's name
        // is the one producing the UFF tensor.
        self.b
            .add_node(output, op, inputs, output)
            .map_err(|e| self.ir(e))
    }

    /// A fresh tensor name derived from this node's.
    fn fresh(&mut self, what: &str) -> String {
        let base = self.view.name().to_owned();
        self.b.fresh(&base, what)
    }

    fn const_i64(&mut self, what: &str, values: Vec<i64>) -> String {
        let name = self.fresh(what);
        self.b.add_const(name.clone(), Tensor::vec_i64(values));
        name
    }

    /// An op reading the node's first `arity` inputs as they are.
    fn simple(&mut self, op: Op, arity: usize) -> Result<()> {
        self.expect_inputs(arity)?;
        let inputs = (0..arity)
            .map(|i| self.input(i).map(Some))
            .collect::<Result<Vec<_>>>()?;
        let out = self.name().to_owned();
        self.emit(op, inputs, &out)
    }

    fn constant(&mut self) -> Result<()> {
        let value = self.view.const_value()?;
        let dtype = match value.dtype {
            ElemType::I8 => DType::I8,
            ElemType::I16 => DType::I16,
            ElemType::I32 => DType::I32,
            ElemType::I64 => DType::I64,
            ElemType::F16 => DType::F16,
            ElemType::F32 => DType::F32,
        };
        let tensor = Tensor::from_le_bytes(dtype, value.shape.clone(), value.bytes)
            .map_err(|e| self.view.bad_field("values", e.to_string()))?;
        let name = self.name().to_owned();
        self.b.add_const(name, tensor);
        Ok(())
    }

    // ------------------------------------------------------------------ layout helpers

    /// The stored order of input `i` (`perm[stored] = canonical`), identity when the node gives none.
    fn input_order(&self, i: usize, rank: usize) -> Result<Vec<usize>> {
        Ok(self
            .view
            .input_order(i, rank)?
            .unwrap_or_else(|| (0..rank).collect()))
    }

    /// Transposes `tensor` (stored with `perm`) into canonical order; returns the tensor to read.
    fn canonicalize(&mut self, tensor: &str, perm: &[usize]) -> Result<String> {
        if orders::is_identity(perm) {
            return Ok(tensor.to_owned());
        }
        let out = self.fresh("uff_to_canonical");
        self.emit(
            Op::Transpose(Transpose {
                perm: orders::to_canonical(perm),
            }),
            vec![Some(tensor.to_owned())],
            &out,
        )?;
        Ok(out)
    }

    /// Emits `op` on canonical data and, when the output is stored in another order, the transpose
    /// back; the final tensor carries the node's name.
    fn emit_canonical(
        &mut self,
        op: Op,
        inputs: Vec<Option<String>>,
        output_perm: &[usize],
    ) -> Result<()> {
        let name = self.name().to_owned();
        if orders::is_identity(output_perm) {
            return self.emit(op, inputs, &name);
        }
        let canonical = self.fresh("uff_canonical");
        self.emit(op, inputs, &canonical)?;
        self.emit(
            Op::Transpose(Transpose {
                perm: orders::from_canonical(output_perm),
            }),
            vec![Some(canonical)],
            &name,
        )
    }

    /// Order of the output: `outputs_orders` when given, else the data input's order.
    fn output_order(&self, rank: usize, data_perm: &[usize]) -> Result<Vec<usize>> {
        Ok(self
            .view
            .output_order(rank)?
            .unwrap_or_else(|| data_perm.to_vec()))
    }

    /// Spatial per-axis list field: absent or empty means `default` on every axis.
    fn spatial_field(&self, field: &str, spatial: usize, default: i64) -> Result<Vec<usize>> {
        let values = self.view.ints_field(field)?.unwrap_or(&[]);
        if values.is_empty() {
            return usize::try_from(default)
                .map(|d| vec![d; spatial])
                .map_err(|_| self.view.bad_field(field, "negative default"));
        }
        if values.len() != spatial {
            return Err(self.view.bad_field(
                field,
                format!("has {} values for {spatial} spatial axes", values.len()),
            ));
        }
        values
            .iter()
            .map(|&v| {
                usize::try_from(v)
                    .ok()
                    .filter(|&v| default == 0 || v > 0)
                    .ok_or_else(|| {
                        self.view
                            .bad_field(field, format!("invalid value {v} in {values:?}"))
                    })
            })
            .collect()
    }

    /// Symmetric explicit `padding` or `implicit_padding` = "same" (TensorFlow SAME: the odd pixel
    /// goes at the end). Returns (ONNX begin+end pads, auto_pad).
    fn padding(&self, spatial: usize) -> Result<(Vec<usize>, AutoPad)> {
        match self.view.str_field("implicit_padding")? {
            Some(p) if p.eq_ignore_ascii_case("same") => {
                return Ok((Vec::new(), AutoPad::SameUpper));
            }
            Some(p) if p.eq_ignore_ascii_case("valid") => {}
            Some(other) => {
                return Err(self.view.bad_field(
                    "implicit_padding",
                    format!("`{other}` is not `same` or `valid`"),
                ));
            }
            None => {}
        }
        let symmetric = self.spatial_field("padding", spatial, 0)?;
        let mut pads = symmetric.clone();
        pads.extend(symmetric);
        Ok((pads, AutoPad::NotSet))
    }

    // ------------------------------------------------------------------ convolution and pooling

    /// The filter as a constant, permuted from the file's order into `K, C, spatial…` canonical order.
    fn canonical_filter(&self, filter: &str, order_index: usize) -> Result<Tensor> {
        let w = self.known(filter, "filter")?;
        let rank = w.rank();
        if rank < 3 {
            return Err(self.view.bad_node(format!(
                "filter `{filter}` has rank {rank}, expected at least 3"
            )));
        }
        let perm = self.input_order(order_index, rank)?;
        transpose_tensor(&w, &orders::to_canonical(&perm))
            .map_err(|e| self.view.bad_node(format!("filter `{filter}`: {e}")))
    }

    /// Stores a rewritten filter: under the filter's own name when this node is its only reader, else
    /// under a new name.
    fn store_filter(&mut self, filter: &str, tensor: Tensor) -> String {
        let only_reader = self.consumers.get(filter).copied() == Some(1)
            && self.b.graph.constants.contains_key(filter);
        if only_reader {
            self.b.add_const(filter.to_owned(), tensor);
            filter.to_owned()
        } else {
            let name = self.fresh("uff_filter");
            self.b.add_const(name.clone(), tensor);
            name
        }
    }

    fn conv(&mut self) -> Result<()> {
        self.expect_inputs(2)?;
        let (x, filter) = (self.input(0)?, self.input(1)?);
        // K, C, spatial…
        let w = self.canonical_filter(&filter, 1)?;
        let spatial = w.rank() - 2;
        let rank = spatial + 2;
        let x_rank = self.rank(&x)?;
        if x_rank != rank {
            return Err(self.view.bad_node(format!(
                "data `{x}` has rank {x_rank}, the {spatial}-D filter needs rank {rank}"
            )));
        }
        let data_perm = self.input_order(0, rank)?;
        let groups = usize::try_from(self.view.int_field("number_groups")?.unwrap_or(1))
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| self.view.bad_field("number_groups", "must be positive"))?;
        let x_canonical_dims =
            permuted_dims(&self.fact(&x)?.shape, &orders::to_canonical(&data_perm));
        let in_channels = x_canonical_dims.get(1).and_then(Dim::fixed);
        let (k, c) = (w.shape()[0], w.shape()[1]);
        // TensorFlow's depthwise filters are `H, W, C_in, multiplier` with one group per input
        // channel: their C axis holds the groups, not C_in / groups.
        let depthwise = groups > 1 && c == groups && in_channels == Some(groups);
        let w = if depthwise {
            // K, C → C, K, then one output channel block of `multiplier` per group.
            let swapped = transpose_tensor(&w, &swap_first_two(rank))
                .map_err(|e| self.view.bad_node(format!("filter `{filter}`: {e}")))?;
            let mut new_shape = vec![c * k, 1];
            new_shape.extend_from_slice(&w.shape()[2..]);
            swapped
                .reshape(new_shape)
                .map_err(|e| self.view.bad_node(format!("filter `{filter}`: {e}")))?
        } else {
            w
        };
        let strides = self.spatial_field("strides", spatial, 1)?;
        let dilations = self.spatial_field("dilation", spatial, 1)?;
        let (pads, auto_pad) = self.padding(spatial)?;
        let w_name = self.store_filter(&filter, w);
        let x_canonical = self.canonicalize(&x, &data_perm)?;
        let out_perm = self.output_order(rank, &data_perm)?;
        self.emit_canonical(
            Op::Conv(Conv {
                kernel_shape: None,
                strides,
                dilations,
                pads,
                auto_pad,
                group: groups,
            }),
            vec![Some(x_canonical), Some(w_name)],
            &out_perm,
        )
    }

    fn conv_transpose(&mut self) -> Result<()> {
        self.expect_inputs(3)?;
        let (x, filter, out_shape) = (self.input(0)?, self.input(1)?, self.input(2)?);
        // K (= output channels), C (= input channels), spatial…; ONNX wants C, K, spatial….
        let w = self.canonical_filter(&filter, 1)?;
        let spatial = w.rank() - 2;
        let rank = spatial + 2;
        let w = transpose_tensor(&w, &swap_first_two(rank))
            .map_err(|e| self.view.bad_node(format!("filter `{filter}`: {e}")))?;
        let groups = self.view.int_field("number_groups")?.unwrap_or(1);
        if groups != 1 {
            return Err(self.view.bad_field(
                "number_groups",
                format!("grouped transposed convolution ({groups}) is not supported"),
            ));
        }
        let data_perm = self.input_order(0, rank)?;
        let strides = self.spatial_field("strides", spatial, 1)?;
        let dilations = self.spatial_field("dilation", spatial, 1)?;
        let x_dims = permuted_dims(&self.fact(&x)?.shape, &orders::to_canonical(&data_perm));
        // The requested output size, stored in the data's order (batch included).
        let requested = self.known_ints(&out_shape, "output shape")?;
        if requested.len() != rank {
            return Err(self.view.bad_node(format!(
                "output shape {requested:?} has {} dims, expected {rank}",
                requested.len()
            )));
        }
        let requested_canonical: Vec<i64> = orders::to_canonical(&data_perm)
            .iter()
            .map(|&stored| requested[stored])
            .collect();
        let same = matches!(self.view.str_field("implicit_padding")?, Some(p) if p.eq_ignore_ascii_case("same"));
        let explicit = self.spatial_field("padding", spatial, 0)?;
        let mut pads_begin = Vec::with_capacity(spatial);
        let mut pads_end = Vec::with_capacity(spatial);
        let mut output_padding = Vec::with_capacity(spatial);
        for axis in 0..spatial {
            let input = x_dims.get(axis + 2).and_then(Dim::fixed).ok_or_else(|| {
                self.view.bad_node(format!(
                    "data `{x}` needs a known spatial size for a transposed convolution"
                ))
            })?;
            let want = requested_canonical[axis + 2];
            let kernel = (w.shape()[axis + 2] as i64 - 1) * dilations[axis] as i64 + 1;
            // Full (uncropped) output minus what was asked for is the total crop.
            let full = (input as i64 - 1) * strides[axis] as i64 + kernel;
            let total = full - want;
            let (begin, end, extra) = if total >= 0 {
                if same {
                    (total / 2, total - total / 2, 0)
                } else {
                    let p = explicit[axis] as i64;
                    (p, total - p, 0)
                }
            } else {
                (0, 0, -total)
            };
            if begin < 0 || end < 0 {
                return Err(self.view.bad_node(format!(
                    "output size {want} on spatial axis {axis} does not fit input {input}, kernel {kernel}, stride {}",
                    strides[axis]
                )));
            }
            pads_begin.push(begin as usize);
            pads_end.push(end as usize);
            output_padding.push(extra as usize);
        }
        let mut pads = pads_begin;
        pads.extend(pads_end);
        let w_name = self.store_filter(&filter, w);
        let x_canonical = self.canonicalize(&x, &data_perm)?;
        let out_perm = self.output_order(rank, &data_perm)?;
        self.emit_canonical(
            Op::ConvTranspose(ConvTranspose {
                kernel_shape: None,
                strides,
                dilations,
                pads,
                auto_pad: AutoPad::NotSet,
                group: 1,
                output_padding,
                output_shape: None,
            }),
            vec![Some(x_canonical), Some(w_name)],
            &out_perm,
        )
    }

    fn pool(&mut self) -> Result<()> {
        self.expect_inputs(1)?;
        let x = self.input(0)?;
        let kind = match self.view.required_str("func")? {
            "max" => PoolKind::Max,
            "avg" => PoolKind::Average,
            other => return Err(self.unsupported_func("pooling function", other)),
        };
        let kernel = self
            .view
            .ints_field("kernel")?
            .ok_or_else(|| self.view.missing("kernel"))?;
        let spatial = kernel.len();
        let kernel = self.spatial_field("kernel", spatial, 1)?;
        let rank = spatial + 2;
        let data_perm = self.input_order(0, rank)?;
        let strides = self.spatial_field("strides", spatial, 1)?;
        let (pads, auto_pad) = self.padding(spatial)?;
        let mut data = self.canonicalize(&x, &data_perm)?;
        // Explicit pool padding comes from a TensorFlow `Pad` folded into the pool, so the padded
        // cells are real zeros that take part in the max and the average.
        if pads.iter().any(|&p| p > 0) {
            let mut onnx_pads = vec![0i64; 2 * rank];
            for axis in 0..spatial {
                onnx_pads[axis + 2] = pads[axis] as i64;
                onnx_pads[rank + axis + 2] = pads[spatial + axis] as i64;
            }
            let pads_name = self.const_i64("uff_pool_pads", onnx_pads);
            let padded = self.fresh("uff_pool_padded");
            self.emit(
                Op::Pad(Pad {
                    mode: PadMode::Constant,
                }),
                vec![Some(data), Some(pads_name)],
                &padded,
            )?;
            data = padded;
        }
        let out_perm = self.output_order(rank, &data_perm)?;
        self.emit_canonical(
            Op::Pool(Pool {
                kind,
                kernel_shape: kernel,
                strides,
                dilations: Vec::new(),
                pads: Vec::new(),
                auto_pad,
                ceil_mode: false,
                // TensorFlow's SAME average pooling divides by the cells inside the image only.
                count_include_pad: false,
            }),
            vec![Some(data)],
            &out_perm,
        )
    }

    fn fully_connected(&mut self) -> Result<()> {
        self.expect_inputs(2)?;
        let (x, w) = (self.input(0)?, self.input(1)?);
        // Writers' defaults: data "NC", weights "KC".
        let x_perm = self.input_order(0, 2)?;
        let w_perm = self.input_order(1, 2)?;
        let mut a = x.clone();
        let x_rank = self.rank(&x)?;
        if x_rank != 2 {
            if !orders::is_identity(&x_perm) {
                return Err(self.view.bad_node(format!(
                    "data `{x}` of rank {x_rank} stored channels-first cannot be flattened"
                )));
            }
            let flat = self.fresh("uff_flatten");
            self.emit(Op::Flatten(Flatten { axis: 1 }), vec![Some(x)], &flat)?;
            a = flat;
        }
        let gemm = Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: !orders::is_identity(&x_perm),
            // Gemm multiplies by B as `C, K`; "KC" weights need transposing.
            trans_b: orders::is_identity(&w_perm),
        };
        let out = self.name().to_owned();
        self.emit(Op::Gemm(gemm), vec![Some(a), Some(w)], &out)
    }

    // ------------------------------------------------------------------ element-wise

    fn unsupported_func(&self, what: &'static str, value: &str) -> UffError {
        UffError::UnsupportedFunc {
            node: self.view.name().to_owned(),
            op: self.view.op().to_owned(),
            func: what,
            value: value.to_owned(),
        }
    }

    fn binary(&mut self) -> Result<()> {
        let func = self.view.required_str("func")?;
        let op = match func {
            "add" => Op::Binary(BinaryOp::Add),
            "sub" => Op::Binary(BinaryOp::Sub),
            "mul" => Op::Binary(BinaryOp::Mul),
            "div" => Op::Binary(BinaryOp::Div),
            "pow" => Op::Binary(BinaryOp::Pow),
            "min" => Op::Variadic(VariadicOp::Min),
            "max" => Op::Variadic(VariadicOp::Max),
            other => return Err(self.unsupported_func("binary function", other)),
        };
        self.simple(op, 2)
    }

    fn unary(&mut self) -> Result<()> {
        let func = self.view.required_str("func")?;
        let simple = |op| Some(Op::Unary(op));
        let op = match func {
            "neg" => simple(UnaryOp::Neg),
            "exp" => simple(UnaryOp::Exp),
            "log" => simple(UnaryOp::Log),
            "abs" => simple(UnaryOp::Abs),
            "sqrt" => simple(UnaryOp::Sqrt),
            "sin" => simple(UnaryOp::Sin),
            "cos" => simple(UnaryOp::Cos),
            "tan" => simple(UnaryOp::Tan),
            "ceil" => simple(UnaryOp::Ceil),
            "floor" => simple(UnaryOp::Floor),
            "rsqrt" | "square" => None,
            other => return Err(self.unsupported_func("unary function", other)),
        };
        if let Some(op) = op {
            return self.simple(op, 1);
        }
        self.expect_inputs(1)?;
        let x = self.input(0)?;
        let out = self.name().to_owned();
        if func == "square" {
            return self.emit(
                Op::Binary(BinaryOp::Mul),
                vec![Some(x.clone()), Some(x)],
                &out,
            );
        }
        // rsqrt(x) = 1 / sqrt(x)
        let root = self.fresh("uff_sqrt");
        self.emit(Op::Unary(UnaryOp::Sqrt), vec![Some(x)], &root)?;
        self.emit(Op::Unary(UnaryOp::Reciprocal), vec![Some(root)], &out)
    }

    fn activation(&mut self) -> Result<()> {
        let func = self.view.required_str("func")?;
        let op = match func {
            "relu" => UnaryOp::Relu,
            "sigmoid" => UnaryOp::Sigmoid,
            "tanh" => UnaryOp::Tanh,
            "elu" => UnaryOp::Elu { alpha: 1.0 },
            "selu" => UnaryOp::Selu {
                alpha: SELU_ALPHA,
                gamma: SELU_GAMMA,
            },
            "softsign" => UnaryOp::Softsign,
            "softplus" => UnaryOp::Softplus,
            "relu6" => return self.relu6(),
            other => return Err(self.unsupported_func("activation", other)),
        };
        self.simple(Op::Unary(op), 1)
    }

    /// relu6(x) = clip(x, 0, 6)
    fn relu6(&mut self) -> Result<()> {
        self.expect_inputs(1)?;
        let x = self.input(0)?;
        let dtype = self.fact(&x)?.dtype;
        let low = self.fresh("uff_relu6_min");
        let high = self.fresh("uff_relu6_max");
        self.b
            .add_const(low.clone(), Tensor::scalar_f32(0.0).cast(dtype));
        self.b
            .add_const(high.clone(), Tensor::scalar_f32(6.0).cast(dtype));
        let out = self.name().to_owned();
        self.emit(Op::Clip, vec![Some(x), Some(low), Some(high)], &out)
    }

    fn softmax(&mut self) -> Result<()> {
        self.expect_inputs(1)?;
        let x = self.input(0)?;
        let rank = self.rank(&x)?;
        // With orders, the softmax runs over the channel axis they name (TensorFlow's last axis for
        // NHWC data). Without, `axis` counts the dims after the batch, as TensorRT read it.
        let axis = match self.view.input_order(0, rank)? {
            Some(perm) => perm.iter().position(|&c| c == 1).ok_or_else(|| {
                self.view.bad_field(
                    "inputs_orders",
                    format!("names no channel axis for rank {rank}"),
                )
            })? as i64,
            None => {
                let axis = self.view.int_field("axis")?.unwrap_or(0);
                if axis >= 0 { axis + 1 } else { axis }
            }
        };
        self.simple(
            Op::Softmax(Softmax {
                axis,
                log: false,
                coerce_to_2d: false,
            }),
            1,
        )
    }

    fn batch_norm(&mut self) -> Result<()> {
        self.expect_inputs(5)?;
        let x = self.input(0)?;
        let rank = self.rank(&x)?;
        let data_perm = self.input_order(0, rank)?;
        let epsilon = self
            .view
            .float_field("epsilon")?
            .unwrap_or(DEFAULT_BATCH_NORM_EPSILON) as f32;
        let mut inputs = vec![Some(self.canonicalize(&x, &data_perm)?)];
        for i in 1..5 {
            inputs.push(Some(self.input(i)?));
        }
        let out_perm = self.output_order(rank, &data_perm)?;
        self.emit_canonical(
            Op::BatchNormalization(BatchNormalization { epsilon }),
            inputs,
            &out_perm,
        )
    }

    // ------------------------------------------------------------------ shape and data movement

    /// The i64 form of an integer vector input: a new constant when its value is known, else a Cast.
    fn as_i64_input(&mut self, tensor: &str, what: &str) -> Result<String> {
        if let Some(value) = self.b.known_value(tensor) {
            if value.dtype() == DType::I64 {
                return Ok(tensor.to_owned());
            }
            if !value.dtype().is_integer() {
                return Err(self.view.bad_node(format!(
                    "{what} `{tensor}` must hold integers, it holds {}",
                    value.dtype()
                )));
            }
            let values = value.to_i64_vec();
            let shape = value.shape().to_vec();
            let name = self.fresh(&format!("uff_{what}_i64"));
            let t = Tensor::from_i64(shape, values).map_err(|e| self.ir(e))?;
            self.b.add_const(name.clone(), t);
            return Ok(name);
        }
        let fact = self.fact(tensor)?;
        if fact.dtype == DType::I64 {
            return Ok(tensor.to_owned());
        }
        let name = self.fresh(&format!("uff_{what}_i64"));
        self.emit(
            Op::Cast(Cast { to: DType::I64 }),
            vec![Some(tensor.to_owned())],
            &name,
        )?;
        Ok(name)
    }

    fn reshape(&mut self) -> Result<()> {
        self.expect_inputs(2)?;
        let (x, shape) = (self.input(0)?, self.input(1)?);
        let x_fact = self.fact(&x)?;
        let known = self.b.known_value(&shape).map(Tensor::to_i64_vec);
        let shape_input = match known {
            Some(mut target) => {
                if target.contains(&0) {
                    return Err(self.view.bad_node(format!(
                        "target shape {target:?} has a zero-sized dimension"
                    )));
                }
                // A reshape of a batched tensor keeps the batch in front, as TensorRT's implicit
                // batch did: the leading -1 (or the batch size 1 the file was written with) becomes
                // "copy the input's first dim". Constants (TAO's per-channel BatchNorm parameters
                // reshaped to [1, C, 1, 1]) have no batch and are reshaped literally.
                let batched = matches!(x_fact.shape.dims().first(), Some(Dim::Symbolic(_)));
                let mut rewritten = false;
                if batched && matches!(target.first(), Some(-1 | 1)) && !target.is_empty() {
                    target[0] = 0;
                    rewritten = true;
                }
                if rewritten || self.b.known_value(&shape).map(Tensor::dtype) != Some(DType::I64) {
                    self.const_i64("uff_shape", target)
                } else {
                    shape
                }
            }
            None => self.as_i64_input(&shape, "shape")?,
        };
        let out = self.name().to_owned();
        self.emit(
            Op::Reshape(Reshape { allowzero: false }),
            vec![Some(x), Some(shape_input)],
            &out,
        )
    }

    fn transpose(&mut self) -> Result<()> {
        self.expect_inputs(1)?;
        let x = self.input(0)?;
        let rank = self.rank(&x)?;
        let perm = self
            .view
            .ints_field("permutation")?
            .ok_or_else(|| self.view.missing("permutation"))?;
        let perm = normalize_perm(perm, rank).map_err(|m| self.view.bad_field("permutation", m))?;
        self.simple(Op::Transpose(Transpose { perm }), 1)
    }

    fn squeeze(&mut self) -> Result<()> {
        self.expect_inputs(1)?;
        let x = self.input(0)?;
        let axes = self.view.ints_field("axes")?.unwrap_or(&[]).to_vec();
        let mut inputs = vec![Some(x)];
        if !axes.is_empty() {
            inputs.push(Some(self.const_i64("uff_axes", axes)));
        }
        let out = self.name().to_owned();
        self.emit(Op::Squeeze, inputs, &out)
    }

    fn expand_dims(&mut self) -> Result<()> {
        self.expect_inputs(1)?;
        let x = self.input(0)?;
        let axis = self.view.required_int("axis")?;
        let axes = self.const_i64("uff_axes", vec![axis]);
        let out = self.name().to_owned();
        self.emit(Op::Unsqueeze, vec![Some(x), Some(axes)], &out)
    }

    fn concat(&mut self) -> Result<()> {
        if self.view.inputs().is_empty() {
            return Err(self.view.bad_node("has no inputs"));
        }
        let axis = self.view.required_int("axis")?;
        let inputs = (0..self.view.inputs().len())
            .map(|i| self.input(i).map(Some))
            .collect::<Result<Vec<_>>>()?;
        let out = self.name().to_owned();
        self.emit(Op::Concat(Concat { axis }), inputs, &out)
    }

    /// Stack(axis) = Unsqueeze each input at `axis`, then Concat.
    fn stack(&mut self) -> Result<()> {
        let count = self.view.inputs().len();
        if count == 0 {
            return Err(self.view.bad_node("has no inputs"));
        }
        let first = self.input(0)?;
        let rank = self.rank(&first)? as i64;
        let axis = self.view.required_int("axis")?;
        let axis = if axis < 0 { axis + rank + 1 } else { axis };
        if !(0..=rank).contains(&axis) {
            return Err(self.view.bad_field(
                "axis",
                format!("out of range for stacking rank-{rank} tensors"),
            ));
        }
        let axes = self.const_i64("uff_axes", vec![axis]);
        let mut parts = Vec::with_capacity(count);
        for i in 0..count {
            let input = self.input(i)?;
            let part = self.fresh(&format!("uff_stack_{i}"));
            self.emit(Op::Unsqueeze, vec![Some(input), Some(axes.clone())], &part)?;
            parts.push(Some(part));
        }
        let out = self.name().to_owned();
        self.emit(Op::Concat(Concat { axis }), parts, &out)
    }

    fn pad(&mut self) -> Result<()> {
        self.expect_inputs(2)?;
        let (x, paddings) = (self.input(0)?, self.input(1)?);
        let rank = self.rank(&x)?;
        // TensorFlow paddings: [rank, 2] of (before, after); ONNX: all befores, then all afters.
        let values = self.known_ints(&paddings, "paddings")?;
        if values.len() != 2 * rank {
            return Err(self.view.bad_node(format!(
                "paddings `{paddings}` has {} values for a rank-{rank} tensor",
                values.len()
            )));
        }
        let mut pads: Vec<i64> = values.iter().step_by(2).copied().collect();
        pads.extend(values.iter().skip(1).step_by(2));
        let pads = self.const_i64("uff_pads", pads);
        let out = self.name().to_owned();
        self.emit(
            Op::Pad(Pad {
                mode: PadMode::Constant,
            }),
            vec![Some(x), Some(pads)],
            &out,
        )
    }

    fn strided_slice(&mut self) -> Result<()> {
        self.expect_inputs(4)?;
        let x = self.input(0)?;
        let begin = self.known_ints(&self.input(1)?, "begin")?;
        let end = self.known_ints(&self.input(2)?, "end")?;
        let strides = self.known_ints(&self.input(3)?, "strides")?;
        let n = begin.len();
        if end.len() != n || strides.len() != n {
            return Err(self.view.bad_node(format!(
                "begin, end and strides have {}, {} and {} values",
                n,
                end.len(),
                strides.len()
            )));
        }
        let rank = self.rank(&x)?;
        if n > rank {
            return Err(self
                .view
                .bad_node(format!("slices {n} axes of a rank-{rank} tensor")));
        }
        for field in ["ellipsis_mask", "new_axis_mask"] {
            if self.view.int_field(field)?.unwrap_or(0) != 0 {
                return Err(self.view.bad_field(field, "is not supported"));
            }
        }
        let mask = |field: &str| -> Result<i64> { Ok(self.view.int_field(field)?.unwrap_or(0)) };
        let (begin_mask, end_mask, shrink_mask) = (
            mask("begin_mask")?,
            mask("end_mask")?,
            mask("shrink_axis_mask")?,
        );
        let bit = |m: i64, i: usize| i < 63 && (m >> i) & 1 == 1;
        let (mut starts, mut ends, mut steps, mut shrink) = (vec![], vec![], vec![], vec![]);
        for i in 0..n {
            let step = strides[i];
            if step == 0 {
                return Err(self.view.bad_node("a stride of 0"));
            }
            // Masked bounds run to the end of the axis in the step's direction.
            let (open_start, open_end) = if step > 0 {
                (0, i64::MAX)
            } else {
                (i64::MAX, i64::MIN)
            };
            let start = if bit(begin_mask, i) {
                open_start
            } else {
                begin[i]
            };
            if bit(shrink_mask, i) {
                // One element at `begin`, then the axis is dropped.
                starts.push(begin[i]);
                ends.push(if begin[i] == -1 {
                    i64::MAX
                } else {
                    begin[i] + 1
                });
                steps.push(1);
                shrink.push(i as i64);
                continue;
            }
            starts.push(start);
            ends.push(if bit(end_mask, i) { open_end } else { end[i] });
            steps.push(step);
        }
        let axes: Vec<i64> = (0..n as i64).collect();
        let inputs = vec![
            Some(x),
            Some(self.const_i64("uff_starts", starts)),
            Some(self.const_i64("uff_ends", ends)),
            Some(self.const_i64("uff_axes", axes)),
            Some(self.const_i64("uff_steps", steps)),
        ];
        let out = self.name().to_owned();
        if shrink.is_empty() {
            return self.emit(Op::Slice, inputs, &out);
        }
        let sliced = self.fresh("uff_slice");
        self.emit(Op::Slice, inputs, &sliced)?;
        let axes = self.const_i64("uff_shrink_axes", shrink);
        self.emit(Op::Squeeze, vec![Some(sliced), Some(axes)], &out)
    }

    /// Shape gives int32 as in TensorFlow, so it combines with the file's int32 constants.
    fn shape(&mut self) -> Result<()> {
        self.expect_inputs(1)?;
        let x = self.input(0)?;
        let wide = self.fresh("uff_shape_i64");
        self.emit(
            Op::Shape(ShapeOf {
                start: 0,
                end: None,
            }),
            vec![Some(x)],
            &wide,
        )?;
        let out = self.name().to_owned();
        self.emit(Op::Cast(Cast { to: DType::I32 }), vec![Some(wide)], &out)
    }

    fn reduce(&mut self) -> Result<()> {
        self.expect_inputs(1)?;
        let x = self.input(0)?;
        let kind = match self.view.required_str("func")? {
            "sum" => ReduceKind::Sum,
            "prod" => ReduceKind::Prod,
            "max" => ReduceKind::Max,
            "min" => ReduceKind::Min,
            "mean" => ReduceKind::Mean,
            other => return Err(self.unsupported_func("reduction", other)),
        };
        let axes = self.view.ints_field("axes")?.unwrap_or(&[]).to_vec();
        let keepdims = self.view.bool_field("keepdims")?.unwrap_or(false);
        // TensorFlow reduces nothing over an empty axis list.
        let op = Op::Reduce(Reduce {
            kind,
            keepdims,
            noop_with_empty_axes: true,
        });
        let axes = self.const_i64("uff_axes", axes);
        let out = self.name().to_owned();
        self.emit(op, vec![Some(x), Some(axes)], &out)
    }

    fn arg_reduce(&mut self) -> Result<()> {
        let kind = if self.view.op() == "ArgMax" {
            ArgKind::Max
        } else {
            ArgKind::Min
        };
        let axis = self.view.required_int("axis")?;
        self.simple(
            Op::ArgReduce(ArgReduce {
                kind,
                axis,
                keepdims: false,
                select_last_index: false,
            }),
            1,
        )
    }

    fn gather(&mut self) -> Result<()> {
        let axis = if self.view.op() == "GatherV2" {
            self.view.int_field("axis")?.unwrap_or(0)
        } else {
            0
        };
        self.simple(Op::Gather(Gather { axis }), 2)
    }
}

/// The dims of `shape` in the order `perm` (output dim `i` = input dim `perm[i]`).
fn permuted_dims(shape: &Shape, perm: &[usize]) -> Vec<Dim> {
    if shape.rank() != perm.len() {
        return Vec::new();
    }
    perm.iter().map(|&p| shape.dims()[p].clone()).collect()
}

/// `[1, 0, 2, 3, …]` for `rank` dims.
fn swap_first_two(rank: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(0, 1);
    perm
}

fn normalize_perm(perm: &[i64], rank: usize) -> std::result::Result<Vec<usize>, String> {
    if perm.len() != rank {
        return Err(format!(
            "{perm:?} has {} entries for rank {rank}",
            perm.len()
        ));
    }
    let mut seen = vec![false; rank];
    perm.iter()
        .map(|&p| {
            let q = if p < 0 { p + rank as i64 } else { p };
            usize::try_from(q)
                .ok()
                .filter(|&q| q < rank && !std::mem::replace(&mut seen[q], true))
                .ok_or_else(|| format!("{perm:?} is not a permutation of {rank} axes"))
        })
        .collect()
}

/// Transposes a constant (output dim `i` = input dim `perm[i]`).
pub(crate) fn transpose_tensor(t: &Tensor, perm: &[usize]) -> std::result::Result<Tensor, String> {
    let shape = t.shape();
    if perm.len() != shape.len() {
        return Err(format!("permutation {perm:?} for rank {}", shape.len()));
    }
    if orders::is_identity(perm) {
        return Ok(t.clone());
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut in_strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let count = t.len();
    let mut indices = Vec::with_capacity(count);
    let mut index = vec![0usize; out_shape.len()];
    for _ in 0..count {
        indices.push(
            index
                .iter()
                .zip(perm)
                .map(|(&i, &p)| i * in_strides[p])
                .sum(),
        );
        // Advance the output index, last axis fastest.
        for axis in (0..out_shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < out_shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Tensor::new(out_shape, t.data().gather(&indices)).map_err(|e| e.to_string())
}
