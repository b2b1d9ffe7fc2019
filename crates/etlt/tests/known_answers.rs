//! NVIDIA's codec outputs, kept as data beside the tests (tests/data/kat_vectors.json).

mod common;

use etlt::{Key, PayloadKind};

const VECTORS: &str = include_str!("data/kat_vectors.json");

/// Pulls `"field": "value"` pairs out of the vectors file in order (the file is flat and fixed).
fn string_fields(field: &str) -> Vec<String> {
    let needle = format!("\"{field}\": \"");
    VECTORS
        .match_indices(&needle)
        .map(|(at, _)| {
            let rest = &VECTORS[at + needle.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

fn kat_plaintext() -> Vec<u8> {
    let mut p: Vec<u8> = (0..5).flat_map(|_| 0u8..=255).collect();
    p.extend_from_slice(b"tail");
    p
}

#[test]
fn pbkdf2_matches_nvidia_for_three_keys() {
    let keys = string_fields("key_utf8");
    let derived = string_fields("pbkdf2_sha256_iter100000_dklen32_hex");
    assert_eq!(derived.len(), 3);
    for (key, want) in keys.iter().zip(&derived) {
        assert_eq!(
            &hex::encode(Key::derive(key).unwrap().as_bytes()),
            want,
            "key {key}"
        );
    }
}

#[test]
fn plaintext_is_the_documented_one() {
    let want = string_fields("plaintext_sha256");
    assert_eq!(common::sha256_hex(&kat_plaintext()), want[0]);
}

/// The two known-answer files: (file, key, header name, nonce, file sha256), from the vectors.
fn kat_files() -> Vec<(String, String, String, String, String)> {
    let files = string_fields("file");
    let keys = string_fields("key_utf8");
    let names = string_fields("header_name");
    let nonces = string_fields("nonce_hex");
    let shas = string_fields("file_sha256");
    assert_eq!(files.len(), 2);
    (0..2)
        .map(|i| {
            (
                files[i].clone(),
                keys[3 + i].clone(),
                names[i].clone(),
                nonces[i].clone(),
                shas[i].clone(),
            )
        })
        .collect()
}

#[test]
fn encoding_reproduces_nvidia_files_byte_for_byte() {
    // Includes the all-ones nonce, whose counter wraps past 2^128 on the second block.
    for (file, key, name, nonce_hex, file_sha) in kat_files() {
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&hex::decode(&nonce_hex).unwrap());
        let key = Key::derive(&key).unwrap();
        let encoded = etlt::encode_bytes(&kat_plaintext(), &name, &key, Some(nonce)).unwrap();
        assert_eq!(common::sha256_hex(&encoded), file_sha, "{file}");
    }
}

#[test]
fn decoding_nvidia_files_gives_the_plaintext() {
    let Some(shared) = common::shared_dir("decoding_nvidia_files_gives_the_plaintext") else {
        return;
    };
    for (file, key, name, nonce_hex, file_sha) in kat_files() {
        let path = shared.join("fixtures/real-etlt/_synthetic-kat").join(&file);
        let data = std::fs::read(&path).unwrap();
        assert_eq!(common::sha256_hex(&data), file_sha);
        let (header, offset) = etlt::Header::parse(&data).unwrap();
        assert_eq!(header.input_name, name);
        assert_eq!(hex::encode(header.nonce), nonce_hex);
        // The plaintext is not a model, so decrypt below the validation layer.
        let mut body = data[offset..].to_vec();
        etlt::Keystream::new(&Key::derive(&key).unwrap(), &header.nonce).apply(&mut body);
        assert_eq!(body, kat_plaintext(), "{file}");
        // Through the validating API it is rejected as not-a-model, never returned as garbage.
        let err = etlt::decode_bytes(&data, &key).unwrap_err();
        assert!(err.is_wrong_key(), "{err}");
    }
}

#[test]
fn counter_wrap_differs_from_a_64_bit_counter() {
    // With nonce ff..ff a 64-bit counter would carry into nothing and repeat the low half's wrap
    // differently; the 128-bit counter's second block must be AES(0). Check block 1 against block 0
    // of a stream started at nonce 0.
    let key = Key::derive("nvidia_tlt").unwrap();
    let mut wrapped = vec![0u8; 32];
    etlt::Keystream::new(&key, &[0xff; 16]).apply(&mut wrapped);
    let mut from_zero = vec![0u8; 16];
    etlt::Keystream::new(&key, &[0; 16]).apply(&mut from_zero);
    assert_eq!(&wrapped[16..], &from_zero[..]);
    let mut low_half_wrap = [0u8; 16];
    low_half_wrap[..8].fill(0xff);
    let mut low = vec![0u8; 16];
    etlt::Keystream::new(&key, &low_half_wrap).apply(&mut low);
    assert_ne!(&wrapped[16..], &low[..]);
    assert_eq!(PayloadKind::from_input_name(""), PayloadKind::Onnx);
}
