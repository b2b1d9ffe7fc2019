//! Input overrides as tao-converter takes them: `-d 3,544,960` (dims without the batch), `-i nchw`
//! (input order nchw / nhwc / nc).

use std::fmt;
use std::str::FromStr;

use super::error::{GraphError, Result};
use super::graph::Graph;
use super::tensor::Dim;

/// Layout of an input as tao-converter's `-i` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputOrder {
    Nchw,
    Nhwc,
    Nc,
}

impl InputOrder {
    /// Number of dims an override lists for this order (the batch is not listed).
    pub fn dims_without_batch(self) -> usize {
        match self {
            InputOrder::Nchw | InputOrder::Nhwc => 3,
            InputOrder::Nc => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InputOrder::Nchw => "nchw",
            InputOrder::Nhwc => "nhwc",
            InputOrder::Nc => "nc",
        }
    }
}

impl fmt::Display for InputOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InputOrder {
    type Err = GraphError;
    fn from_str(s: &str) -> Result<InputOrder> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nchw" => Ok(InputOrder::Nchw),
            "nhwc" => Ok(InputOrder::Nhwc),
            "nc" => Ok(InputOrder::Nc),
            other => Err(GraphError::InputMismatch {
                input: String::new(),
                detail: format!("unknown input order `{other}` (expected nchw, nhwc or nc)"),
            }),
        }
    }
}

/// A shape override for one graph input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputOverride {
    /// Input name; `None` means the graph's only input.
    pub name: Option<String>,
    /// Dims without the batch, in the layout `order` names (C,H,W for nchw; H,W,C for nhwc; C for nc).
    pub dims: Vec<usize>,
    pub order: InputOrder,
}

impl InputOverride {
    /// Parses tao-converter's `-d` value ("3,544,960"; `;` and `x` also separate) with an order.
    pub fn parse(name: Option<&str>, dims: &str, order: InputOrder) -> Result<InputOverride> {
        let input = name.unwrap_or("").to_string();
        let mut tokens: Vec<&str> = dims
            .split([',', ';', 'x'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        // DeepStream configs write a trailing 0 for the order (`3;480;640;0`); accept it.
        if tokens.len() == order.dims_without_batch() + 1 && tokens.last() == Some(&"0") {
            tokens.pop();
        }
        let parsed: Vec<usize> = tokens
            .iter()
            .map(|s| {
                s.parse::<usize>().ok().filter(|&d| d > 0).ok_or_else(|| {
                    GraphError::InputMismatch {
                        input: input.clone(),
                        detail: format!("dims `{dims}`: `{s}` is not a positive integer"),
                    }
                })
            })
            .collect::<Result<_>>()?;
        if parsed.len() != order.dims_without_batch() {
            return Err(GraphError::InputMismatch {
                input,
                detail: format!(
                    "dims `{dims}` list {} values; input order {order} takes {} (the batch is not listed)",
                    parsed.len(),
                    order.dims_without_batch()
                ),
            });
        }
        Ok(InputOverride {
            name: name.map(str::to_string),
            dims: parsed,
            order,
        })
    }
}

impl Graph {
    /// Applies an override: the input keeps its batch dim and takes the listed dims. Listed dims must
    /// agree with dims the model fixes; symbolic dims take the listed values.
    pub fn apply_input_override(&mut self, ov: &InputOverride) -> Result<()> {
        let graph_name = self.name.clone();
        let count = self.inputs.len();
        let input = match &ov.name {
            Some(n) => self.input_mut(n).ok_or_else(|| GraphError::UnknownTensor {
                name: n.clone(),
                detail: format!("graph `{graph_name}` has no input of that name"),
            })?,
            None if count == 1 => &mut self.inputs[0],
            None => {
                return Err(GraphError::InputMismatch {
                    input: String::new(),
                    detail: format!(
                        "graph `{graph_name}` has {count} inputs; the override must name one"
                    ),
                });
            }
        };
        let rank = input.shape.rank();
        if rank != ov.dims.len() + 1 {
            return Err(GraphError::InputMismatch {
                input: input.name.clone(),
                detail: format!(
                    "override {:?} ({}) needs a rank-{} input, the model declares {} (rank {rank})",
                    ov.dims,
                    ov.order,
                    ov.dims.len() + 1,
                    input.shape
                ),
            });
        }
        for (axis, (declared, &given)) in input.shape.0[1..].iter().zip(&ov.dims).enumerate() {
            if let Dim::Fixed(d) = declared
                && *d != given
            {
                return Err(GraphError::InputMismatch {
                    input: input.name.clone(),
                    detail: format!(
                        "override {:?} ({}) gives {given} for axis {} where the model fixes {d} (declared {})",
                        ov.dims,
                        ov.order,
                        axis + 1,
                        input.shape
                    ),
                });
            }
        }
        for (slot, &given) in input.shape.0[1..].iter_mut().zip(&ov.dims) {
            *slot = Dim::Fixed(given);
        }
        input.layout = Some(ov.order);
        Ok(())
    }
}
