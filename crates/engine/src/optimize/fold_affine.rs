use tao_graph::ir::{BinaryOp, Graph, Op, Result, Tensor};

use super::{Pass, reader_count};

/// Folds per-output-channel affine maps that follow a convolution into its weights and bias:
/// BatchNormalization, and Mul / Div / Add / Sub by a constant that varies at most along the channel
/// axis (what TAO's unfused BatchNorm chains leave after constant folding). The convolution takes
/// over the name of the folded node's output, so names later stages see (calibration caches, output
/// selection) stay as in the source model.
pub struct FoldAffineIntoConv;

impl Pass for FoldAffineIntoConv {
    fn name(&self) -> &'static str {
        "fold-affine-into-conv"
    }

    fn run(&self, graph: &mut Graph) -> Result<usize> {
        let mut folded = 0;
        let mut c = 0;
        while c < graph.nodes.len() {
            if try_fold_after(graph, c)? {
                folded += 1;
            } else {
                c += 1;
            }
        }
        Ok(folded)
    }
}

/// Per-channel `y = scale[m] * conv(x)[m] + shift[m]`.
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

/// Tries to fold the single reader of conv node `c`'s output into it.
fn try_fold_after(graph: &mut Graph, c: usize) -> Result<bool> {
    let conv = &graph.nodes[c];
    if !matches!(conv.op, Op::Conv(_)) || conv.outputs.len() != 1 {
        return Ok(false);
    }
    let y = conv.outputs[0].clone();
    let Some(w_name) = conv.input(1).map(str::to_owned) else {
        return Ok(false);
    };
    let Some(w) = graph
        .constants
        .get(&w_name)
        .filter(|w| w.as_f32().is_some() && w.rank() >= 3)
    else {
        return Ok(false);
    };
    let out_channels = w.shape()[0];
    let rank = w.rank();
    let readers = graph.consumers(&y);
    if readers.len() != 1 || reader_count(graph, &y) != 1 {
        return Ok(false);
    }
    let r = readers[0];
    let Some(affine) = affine_of(graph, r, &y, out_channels, rank) else {
        return Ok(false);
    };

    // New weights and bias (under new names: the old constants may be shared).
    let conv = &graph.nodes[c];
    let conv_name = conv.name.clone();
    let w = &graph.constants[&w_name];
    let per_channel = w.len() / out_channels;
    let mut weights = w.as_f32().map(<[f32]>::to_vec).unwrap_or_default();
    for (m, chunk) in weights.chunks_mut(per_channel).enumerate() {
        chunk.iter_mut().for_each(|v| *v *= affine.scale[m]);
    }
    let old_bias = match conv.input(2).and_then(|b| graph.constants.get(b)) {
        Some(b) => match b.as_f32() {
            Some(v) if v.len() == out_channels => v.to_vec(),
            _ => return Ok(false),
        },
        None if conv.input(2).is_some() => return Ok(false),
        None => vec![0.0; out_channels],
    };
    let bias: Vec<f32> = (0..out_channels)
        .map(|m| old_bias[m] * affine.scale[m] + affine.shift[m])
        .collect();
    let w_shape = w.shape().to_vec();
    let new_w = unique_name(graph, &format!("{conv_name}/folded_weights"));
    let new_b = unique_name(graph, &format!("{conv_name}/folded_bias"));
    graph
        .constants
        .insert(new_w.clone(), Tensor::from_f32(w_shape, weights)?);
    graph.constants.insert(new_b.clone(), Tensor::vec_f32(bias));

    let reader = graph.nodes.remove(r);
    let conv = &mut graph.nodes[if r < c { c - 1 } else { c }];
    conv.inputs.resize(3, None);
    conv.inputs[1] = Some(new_w);
    conv.inputs[2] = Some(new_b);
    conv.outputs[0] = reader.outputs[0].clone();
    Ok(true)
}

/// The affine map node `r` applies to `y`, when it is one with per-channel constants.
fn affine_of(graph: &Graph, r: usize, y: &str, channels: usize, rank: usize) -> Option<Affine> {
    let node = &graph.nodes[r];
    if node.outputs.len() != 1 || node.input(0).is_none() {
        return None;
    }
    let constant = |i: usize| node.input(i).and_then(|n| graph.constants.get(n));
    match &node.op {
        Op::BatchNormalization(bn) => {
            if node.input(0) != Some(y) {
                return None;
            }
            let [scale, bias, mean, var] =
                [1, 2, 3, 4].map(|i| constant(i).and_then(|t| channel_vector(t, channels)));
            let (scale, bias, mean, var) = (scale?, bias?, mean?, var?);
            let mul: Vec<f32> = (0..channels)
                .map(|m| scale[m] / (var[m] + bn.epsilon).sqrt())
                .collect();
            let shift = (0..channels).map(|m| bias[m] - mean[m] * mul[m]).collect();
            Some(Affine { scale: mul, shift })
        }
        Op::Binary(op @ (BinaryOp::Mul | BinaryOp::Div | BinaryOp::Add | BinaryOp::Sub)) => {
            let (y_first, k) = if node.input(0) == Some(y) {
                (true, constant(1)?)
            } else if node.input(1) == Some(y) {
                (false, constant(0)?)
            } else {
                return None;
            };
            // The constant must not broadcast the result to a bigger shape than the conv output.
            if k.rank() > rank {
                return None;
            }
            let k = per_channel(k, channels, rank)?;
            let ones = vec![1.0; channels];
            let zeros = vec![0.0; channels];
            Some(match (op, y_first) {
                (BinaryOp::Mul, _) => Affine {
                    scale: k,
                    shift: zeros,
                },
                (BinaryOp::Div, true) if k.iter().all(|v| *v != 0.0) => Affine {
                    scale: k.iter().map(|v| 1.0 / v).collect(),
                    shift: zeros,
                },
                (BinaryOp::Add, _) => Affine {
                    scale: ones,
                    shift: k,
                },
                (BinaryOp::Sub, true) => Affine {
                    scale: ones,
                    shift: k.iter().map(|v| -v).collect(),
                },
                (BinaryOp::Sub, false) => Affine {
                    scale: vec![-1.0; channels],
                    shift: k,
                },
                _ => return None,
            })
        }
        _ => None,
    }
}

/// A constant that varies at most along axis 1 of a rank-`rank` NC… tensor under numpy
/// broadcasting, expanded to one value per channel.
fn per_channel(t: &Tensor, channels: usize, rank: usize) -> Option<Vec<f32>> {
    let values = t.to_f32_vec();
    if !t.dtype().is_float() {
        return None;
    }
    if values.len() == 1 {
        return Some(vec![values[0]; channels]);
    }
    if values.len() != channels {
        return None;
    }
    // Right-align the constant's shape with the output's rank; the one non-1 dim must sit on axis 1.
    let offset = rank.checked_sub(t.rank())?;
    let on_channel_axis = t
        .shape()
        .iter()
        .enumerate()
        .all(|(i, &d)| d == 1 || (i + offset == 1 && d == channels));
    on_channel_axis.then_some(values)
}

fn unique_name(graph: &Graph, base: &str) -> String {
    let mut name = base.to_owned();
    let mut n = 1;
    while graph.has_tensor(&name) {
        n += 1;
        name = format!("{base}_{n}");
    }
    name
}

/// BatchNormalization's parameters: plain `[C]` vectors by definition.
fn channel_vector(t: &Tensor, channels: usize) -> Option<Vec<f32>> {
    (t.dtype().is_float() && t.shape() == [channels]).then(|| t.to_f32_vec())
}
