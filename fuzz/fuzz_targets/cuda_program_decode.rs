//! Any bytes as the CUDA plan's program section (with and without a weights blob): an error or a
//! program, never a panic. Runs without a GPU: decoding touches no device.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let (program, weights) = data.split_at(split);
    let _ = tao_backend_cuda::codec::decode(program, weights.to_vec());
    let _ = tao_backend_cuda::codec::decode(data, Vec::new());
});
