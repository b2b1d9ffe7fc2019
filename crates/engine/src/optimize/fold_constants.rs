use tao_graph::ir::{Graph, Result};

use super::Pass;

/// Evaluates nodes whose inputs are all constants (TAO UFF models compute every BatchNorm's scale
/// and shift at run time from constants: Reshape, rsqrt, mul, sub chains) and keeps the results as
/// constants.
pub struct FoldConstants;

/// Folding must not blow a model up: results larger than this stay computed at run time.
const MAX_FOLDED_ELEMENTS: usize = 1 << 24;

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, graph: &mut Graph) -> Result<usize> {
        let mut folded = 0;
        let mut i = 0;
        while i < graph.nodes.len() {
            let node = &graph.nodes[i];
            let all_constant = node
                .present_inputs()
                .all(|name| graph.constants.contains_key(name));
            if !all_constant || node.outputs.iter().any(|o| graph.input(o).is_some()) {
                i += 1;
                continue;
            }
            let inputs: Vec<_> = node
                .inputs
                .iter()
                .map(|name| name.as_deref().and_then(|n| graph.constants.get(n)))
                .collect();
            let values = node
                .op
                .eval(&inputs, node.outputs.len())
                .map_err(|e| e.at(&node.name, node.op_type()))?;
            if values.iter().any(|v| v.len() > MAX_FOLDED_ELEMENTS) {
                i += 1;
                continue;
            }
            let node = graph.nodes.remove(i);
            for (name, value) in node.outputs.into_iter().zip(values) {
                if !name.is_empty() {
                    graph.constants.insert(name, value);
                }
            }
            folded += 1;
        }
        Ok(folded)
    }
}
