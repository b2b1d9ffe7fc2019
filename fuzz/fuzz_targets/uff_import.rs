//! Any bytes through the UFF importer (and shape inference of what it imports): errors are fine,
//! panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(graph) = tao_graph::uff::import(data, None) {
        let _ = graph.infer();
    }
});
