//! Any bytes through the .etlt decoder, in memory and streaming: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = etlt::Key::from_raw([0x5a; 32]);
    let _ = etlt::decode_bytes_with_key(data, &key);
    let _ = etlt::Header::parse(data);
    if let Ok(decryptor) = etlt::Decryptor::new(data, &key) {
        let _ = decryptor.copy_to(&mut std::io::sink());
    }
    for kind in [etlt::PayloadKind::Uff, etlt::PayloadKind::Onnx] {
        let _ = etlt::payload::payload_is_valid(kind, data);
    }
});
