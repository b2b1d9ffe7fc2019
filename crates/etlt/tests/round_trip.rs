//! Property tests: encode → decode gives back exactly what went in, for any name, key and size.

use etlt::{Header, Key, Keystream};
use proptest::prelude::*;

fn decrypt_raw(file: &[u8], key: &Key) -> (Header, Vec<u8>) {
    let (header, offset) = Header::parse(file).unwrap();
    let mut body = file[offset..].to_vec();
    Keystream::new(key, &header.nonce).apply(&mut body);
    (header, body)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn in_memory_round_trip(
        name in "[a-zA-Z0-9_/:]{0,40}",
        raw_key in any::<[u8; 32]>(),
        nonce in any::<[u8; 16]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let key = Key::from_raw(raw_key);
        let file = etlt::encode_bytes(&payload, &name, &key, Some(nonce)).unwrap();
        prop_assert_eq!(file.len(), 4 + name.len() + 16 + payload.len());
        let (header, body) = decrypt_raw(&file, &key);
        prop_assert_eq!(header.input_name, name);
        prop_assert_eq!(header.nonce, nonce);
        prop_assert_eq!(body, payload);
    }

    #[test]
    fn streaming_matches_in_memory(
        name in "[a-z_]{0,12}",
        raw_key in any::<[u8; 32]>(),
        nonce in any::<[u8; 16]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..5000),
    ) {
        let key = Key::from_raw(raw_key);
        let in_memory = etlt::encode_bytes(&payload, &name, &key, Some(nonce)).unwrap();
        let mut streamed = Vec::new();
        let len = etlt::encrypt_stream(payload.as_slice(), &mut streamed, &key, &name, nonce).unwrap();
        prop_assert_eq!(len, payload.len() as u64);
        prop_assert_eq!(&streamed, &in_memory);
    }

    #[test]
    fn keystream_in_pieces_equals_one_pass(
        raw_key in any::<[u8; 32]>(),
        nonce in any::<[u8; 16]>(),
        cuts in proptest::collection::vec(0usize..100, 1..8),
    ) {
        let key = Key::from_raw(raw_key);
        let total: usize = cuts.iter().sum();
        let mut whole = vec![0u8; total];
        Keystream::new(&key, &nonce).apply(&mut whole);
        let mut pieces = vec![0u8; total];
        let mut ks = Keystream::new(&key, &nonce);
        let mut at = 0;
        for cut in cuts {
            ks.apply(&mut pieces[at..at + cut]);
            at += cut;
        }
        prop_assert_eq!(pieces, whole);
    }

    #[test]
    fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = etlt::decode_bytes_with_key(&data, &Key::from_raw([1; 32]));
        let _ = etlt::Decryptor::new(data.as_slice(), &Key::from_raw([1; 32]));
    }
}

#[test]
fn multithreaded_keystream_equals_sequential() {
    // Large enough to take the threaded path, with a ragged end and a wrapping counter.
    let key = Key::from_raw([3; 32]);
    let nonce = [0xff; 16];
    let len = (3 << 20) + 13;
    let mut seq = vec![0x5au8; len];
    Keystream::new(&key, &nonce).with_threads(1).apply(&mut seq);
    for threads in [2, 3, 7] {
        let mut par = vec![0x5au8; len];
        let mut ks = Keystream::new(&key, &nonce).with_threads(threads);
        ks.apply(&mut par[..5]);
        ks.apply(&mut par[5..]);
        assert!(par == seq, "{threads} threads");
    }
}

#[test]
fn valid_models_round_trip_through_the_validating_api() {
    // A minimal well-framed ONNX model (ir_version 7, graph { name "g" }) and UFF MetaGraph.
    let onnx = [8u8, 7, 0x3a, 3, 0x12, 1, b'g'];
    let uff = [8u8, 1, 16, 1, 0x1a, 0, 0x22, 2, 0x0a, 0];
    let key = Key::derive("tlt_encode").unwrap();
    for (payload, name) in [(&onnx[..], ""), (&uff[..], "input_1")] {
        let file = etlt::encode_bytes(payload, name, &key, None).unwrap();
        let decoded = etlt::decode_bytes(&file, "tlt_encode").unwrap();
        assert_eq!(decoded.bytes, payload);
        assert_eq!(decoded.input_name, name);
        let err = etlt::decode_bytes(&file, "nvidia_tlt").unwrap_err();
        assert!(err.is_wrong_key());
    }
}
