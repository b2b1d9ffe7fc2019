//! Real NGC models: payload hashes from SOURCES.md, and wrong keys named as such.

mod common;

use etlt::PayloadKind;

struct RealModel {
    path: &'static str,
    key: &'static str,
    kind: PayloadKind,
    input_name: &'static str,
    payload_len: u64,
    payload_sha256: &'static str,
}

const MODELS: [RealModel; 2] = [
    RealModel {
        path: "fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt",
        key: "nvidia_tlt",
        kind: PayloadKind::Uff,
        input_name: "input_1",
        payload_len: 978_307,
        payload_sha256: "b42b287820222d15f922af76590d37a71d220dc916740cc74aae6a5a9ada76b8",
    },
    RealModel {
        path: "fixtures/real-etlt/fpenet_deployable_v3.0/faciallandmarks.etlt",
        key: "nvidia_tlt",
        kind: PayloadKind::Onnx,
        input_name: "",
        payload_len: 2_350_994,
        payload_sha256: "2c281b7a0a0d1b1c8cc48c32279468c45e5377694310b6a86808a74fbdb18928",
    },
];

#[test]
fn real_models_decode_to_the_published_payloads() {
    let Some(shared) = common::shared_dir("real_models_decode_to_the_published_payloads") else {
        return;
    };
    for model in &MODELS {
        let path = shared.join(model.path);
        let payload = etlt::decode_file(&path, model.key).unwrap();
        assert_eq!(payload.kind, model.kind, "{}", model.path);
        assert_eq!(payload.input_name, model.input_name);
        assert_eq!(payload.bytes.len() as u64, model.payload_len);
        assert_eq!(common::sha256_hex(&payload.bytes), model.payload_sha256);

        // The streaming path gives the same bytes.
        let key = etlt::Key::derive(model.key).unwrap();
        let mut streamed = Vec::new();
        let info =
            etlt::decrypt_stream(std::fs::File::open(&path).unwrap(), &mut streamed, &key).unwrap();
        assert_eq!(info.kind, model.kind);
        assert_eq!(info.payload_len, model.payload_len);
        assert_eq!(streamed, payload.bytes);

        // Re-encrypting with the file's own nonce reproduces the file exactly.
        let original = std::fs::read(&path).unwrap();
        let (header, _) = etlt::Header::parse(&original).unwrap();
        let again =
            etlt::encode_bytes(&payload.bytes, model.input_name, &key, Some(header.nonce)).unwrap();
        assert!(again == original, "{}: re-encryption differs", model.path);
    }
}

#[test]
fn wrong_key_on_real_models_is_named_as_wrong_key() {
    let Some(shared) = common::shared_dir("wrong_key_on_real_models_is_named_as_wrong_key") else {
        return;
    };
    for model in &MODELS {
        let path = shared.join(model.path);
        for wrong in ["tlt_encode", "nvidia_tlt ", "NVIDIA_TLT"] {
            let err = etlt::decode_file(&path, wrong).unwrap_err();
            assert!(err.is_wrong_key(), "{}: {err}", model.path);
            let text = err.to_string();
            assert!(text.contains("key is probably wrong"), "{text}");
            assert!(
                text.contains(model.path.rsplit('/').next().unwrap()),
                "names the file: {text}"
            );

            let key = etlt::Key::derive(wrong).unwrap();
            let mut out = Vec::new();
            let err = etlt::decrypt_stream(std::fs::File::open(&path).unwrap(), &mut out, &key)
                .unwrap_err();
            assert!(err.is_wrong_key(), "stream: {err}");
            assert!(
                out.is_empty(),
                "nothing is written before the key is judged"
            );
        }
    }
}
