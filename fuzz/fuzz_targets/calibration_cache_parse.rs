//! Any text as a TensorRT calibration cache: an error or a table that writes back and re-reads equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tao_engine::calibration::CalibrationCache;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cache) = CalibrationCache::parse(text) {
        let again = CalibrationCache::parse(&cache.to_string()).expect("our own output parses");
        assert_eq!(again.scales.len(), cache.scales.len());
    }
});
