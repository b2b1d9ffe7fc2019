//! Any bytes through the ONNX importer, then shape inference, statistics and export of whatever
//! imports: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(graph) = tao_graph::onnx::import(data) {
        if graph.infer().is_ok() {
            let _ = graph.stats_at_batch(1);
            let _ = tao_graph::onnx::export(&graph, &tao_graph::onnx::ExportOptions::default());
        }
    }
});
