//! Any text as a DeepStream nvinfer config file: parsed into typed keys or rejected with an error
//! naming the line, never a panic.
#![no_main]

use std::path::Path;

use gsttaoinfer::config::{KeyFile, NvinferConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/fuzz/config.txt");
    if let Ok(file) = KeyFile::parse(&text, path)
        && let Ok(cfg) = NvinferConfig::from_key_file(&file, path)
    {
        for attrs in cfg.class_attrs.values() {
            let _ = attrs.or(&cfg.class_attrs_all);
        }
    }
});
