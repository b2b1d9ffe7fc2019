//! The `.etlt` container of NVIDIA TAO models: an input-node name, a 16-byte AES-CTR nonce and an
//! AES-256-CTR-encrypted UFF or ONNX model, keyed by PBKDF2-HMAC-SHA256 of the model key.
//!
//! Byte-compatible with NVIDIA's codec in both directions. Decrypted bytes are checked before they are
//! returned, so a wrong key is reported as such ([`Error::WrongKey`]) instead of surfacing later as a
//! parser failure. Nothing here panics on any input.
//!
//! In memory: [`decode_bytes`], [`decode_file`], [`encode_bytes`]. Streaming in constant memory:
//! [`Decryptor`], [`decrypt_stream`], [`Encryptor`], [`encrypt_stream`].

mod error;
pub mod header;
mod key;
mod keystream;
pub mod payload;
mod stream;

use std::path::Path;

pub use error::{Error, Result};
pub use header::{Header, NONCE_LEN};
pub use key::{KDF_ITERATIONS, KDF_SALT, Key};
pub use keystream::Keystream;
pub use payload::PayloadKind;
pub use stream::{Decryptor, Encryptor, StreamInfo, decrypt_stream, encrypt_stream};

/// A decrypted, validated model.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    pub kind: PayloadKind,
    /// The input-node name from the header (empty for ONNX).
    pub input_name: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("kind", &self.kind)
            .field("input_name", &self.input_name)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Decrypts an in-memory `.etlt` with a model key string (e.g. `nvidia_tlt`).
pub fn decode_bytes(data: &[u8], key: &str) -> Result<Payload> {
    // Parse the header first: a malformed file is reported as such without paying for the KDF.
    Header::parse(data)?;
    decode_bytes_with_key(data, &Key::derive(key)?)
}

/// Decrypts an in-memory `.etlt` with an already-derived key.
pub fn decode_bytes_with_key(data: &[u8], key: &Key) -> Result<Payload> {
    let (header, offset) = Header::parse(data)?;
    let mut bytes = data[offset..].to_vec();
    Keystream::new(key, &header.nonce).apply(&mut bytes);
    let kind = PayloadKind::from_input_name(&header.input_name);
    if !payload::payload_is_valid(kind, &bytes) {
        return Err(Error::WrongKey { kind });
    }
    Ok(Payload {
        kind,
        input_name: header.input_name,
        bytes,
    })
}

/// Reads and decrypts an `.etlt` file; errors name the file.
pub fn decode_file(path: impl AsRef<Path>, key: &str) -> Result<Payload> {
    let path = path.as_ref();
    let data = std::fs::read(path).map_err(|e| Error::Io(e).in_file(path))?;
    decode_bytes(&data, key).map_err(|e| e.in_file(path))
}

/// Encrypts `payload` into an `.etlt`. An empty `input_name` makes an ONNX container. `nonce: None`
/// draws a fresh random nonce, as NVIDIA's writer does.
pub fn encode_bytes(
    payload: &[u8],
    input_name: &str,
    key: &Key,
    nonce: Option<[u8; NONCE_LEN]>,
) -> Result<Vec<u8>> {
    let nonce = match nonce {
        Some(n) => n,
        None => fresh_nonce()?,
    };
    let header = Header {
        input_name: input_name.to_owned(),
        nonce,
    };
    let mut out = Vec::with_capacity(header.encoded_len() + payload.len());
    header.write_to(&mut out)?;
    let start = out.len();
    out.extend_from_slice(payload);
    Keystream::new(key, &nonce).apply(&mut out[start..]);
    Ok(out)
}

/// A random initial counter block from the operating system.
pub fn fresh_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(nonce)
}
