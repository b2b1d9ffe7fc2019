//! Malformed containers: each gets its own clear error, never a panic.

use etlt::{Error, Key};

fn key() -> Key {
    Key::from_raw([7; 32])
}

fn decode(data: &[u8]) -> Error {
    etlt::decode_bytes_with_key(data, &key()).unwrap_err()
}

#[test]
fn shorter_than_header() {
    for len in 0..4 {
        let err = decode(&vec![0u8; len]);
        assert!(
            matches!(err, Error::TooShort { len: l } if l == len as u64),
            "{err}"
        );
        assert!(err.to_string().contains("shorter than the 4-byte"));
    }
}

#[test]
fn negative_name_length() {
    let err = decode(&(-5i32).to_le_bytes());
    assert!(matches!(err, Error::NegativeNameLength(-5)), "{err}");
    assert!(err.to_string().contains("negative"));
}

#[test]
fn name_length_past_end_of_file() {
    let mut data = 100i32.to_le_bytes().to_vec();
    data.extend_from_slice(b"input_1");
    let err = decode(&data);
    assert!(
        matches!(
            err,
            Error::OversizedName {
                declared: 100,
                available: 7
            }
        ),
        "{err}"
    );
}

#[test]
fn absurd_name_length() {
    let err = decode(&i32::MAX.to_le_bytes());
    assert!(matches!(err, Error::NameTooLong(_)), "{err}");
}

#[test]
fn missing_nonce() {
    let mut data = 7i32.to_le_bytes().to_vec();
    data.extend_from_slice(b"input_1");
    data.extend_from_slice(&[1, 2, 3]);
    let err = decode(&data);
    assert!(matches!(err, Error::MissingNonce { available: 3 }), "{err}");
    assert!(err.to_string().contains("nonce is missing"));
}

#[test]
fn non_utf8_name() {
    let mut data = 2i32.to_le_bytes().to_vec();
    data.extend_from_slice(&[0xff, 0xfe]);
    data.extend_from_slice(&[0; 16]);
    assert!(matches!(decode(&data), Error::NameNotUtf8));
}

#[test]
fn empty_payload_is_no_model() {
    let mut data = 0i32.to_le_bytes().to_vec();
    data.extend_from_slice(&[0; 16]);
    let err = decode(&data);
    assert!(err.is_wrong_key(), "{err}");
}

#[test]
fn unreadable_file_names_the_file() {
    let err = etlt::decode_file("/nonexistent/dir/model.etlt", "nvidia_tlt").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/nonexistent/dir/model.etlt"), "{text}");
    assert!(matches!(err.cause(), Error::Io(_)));
}

#[test]
fn truncated_file_on_disk_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.etlt");
    std::fs::write(&path, [7, 0, 0]).unwrap();
    let text = etlt::decode_file(&path, "k").unwrap_err().to_string();
    assert!(
        text.contains("cut.etlt") && text.contains("shorter"),
        "{text}"
    );
}

#[test]
fn empty_key_is_refused() {
    assert!(matches!(Key::derive(""), Err(Error::EmptyKey)));
}

#[test]
fn streaming_reader_reports_the_same_header_errors() {
    let key = key();
    let cases: Vec<Vec<u8>> = vec![
        vec![1, 2],
        (-1i32).to_le_bytes().to_vec(),
        [5i32.to_le_bytes().as_slice(), b"ab"].concat(),
        [1i32.to_le_bytes().as_slice(), b"a", &[0; 5]].concat(),
    ];
    for data in cases {
        let err = etlt::Decryptor::new(data.as_slice(), &key).err().unwrap();
        assert!(!err.is_wrong_key(), "header error expected, got {err}");
    }
}
