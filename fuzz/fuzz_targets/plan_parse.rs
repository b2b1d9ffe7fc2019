//! Any bytes as an engine plan: rejected with an error or indexed, never a panic or out-of-bounds read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tao_engine::aligned::AlignedBytes;
use tao_engine::plan::Plan;

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = Plan::parse(AlignedBytes::from_slice(data)) {
        let names: Vec<String> = plan.section_names().map(str::to_owned).collect();
        for name in names {
            let _ = plan.section(&name);
        }
    }
});
