use tao_graph::ir::{Graph, Op, Result};

use super::{Pass, reader_count, rewire};

/// Drops Identity nodes (importers turn Dropout and friends into Identity). Readers are pointed at
/// the identity's input; when the identity's output is a graph output, its producer is renamed to
/// that output instead, so the output name survives.
pub struct RemoveIdentities;

impl Pass for RemoveIdentities {
    fn name(&self) -> &'static str {
        "remove-identities"
    }

    fn run(&self, graph: &mut Graph) -> Result<usize> {
        let mut removed = 0;
        let mut i = 0;
        while i < graph.nodes.len() {
            let node = &graph.nodes[i];
            let (Op::Identity, Some(input), [output]) =
                (&node.op, node.input(0), node.outputs.as_slice())
            else {
                i += 1;
                continue;
            };
            let (input, output) = (input.to_owned(), output.clone());
            if !graph.outputs.contains(&output) {
                rewire(graph, &output, &input);
            } else {
                // Rename the producer's output, if it has one and nothing else needs the old name.
                let renamable = graph.producer(&input).is_some()
                    && reader_count(graph, &input) == 1
                    && !graph.outputs.contains(&input);
                if !renamable {
                    i += 1;
                    continue;
                }
                if let Some((p, _)) = graph.producer(&input) {
                    for o in &mut graph.nodes[p].outputs {
                        if *o == input {
                            *o = output.clone();
                        }
                    }
                }
            }
            graph.nodes.remove(i);
            removed += 1;
        }
        Ok(removed)
    }
}
