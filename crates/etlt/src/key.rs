use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

/// Fixed PBKDF2 salt of NVIDIA's TAO codec.
pub const KDF_SALT: [u8; 32] = [
    0xcb, 0x3c, 0xdc, 0x2e, 0x85, 0x86, 0x89, 0xda, 0x90, 0x85, 0x63, 0x05, 0x6a, 0x00, 0xdb, 0xed,
    0x09, 0xac, 0x07, 0x6c, 0x78, 0x55, 0x43, 0xc4, 0x61, 0x0f, 0x06, 0xd3, 0x1b, 0x53, 0xa7, 0x32,
];
/// PBKDF2 iteration count of NVIDIA's TAO codec.
pub const KDF_ITERATIONS: u32 = 100_000;

/// An AES-256 key derived from a TAO model key string. Wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; 32]);

impl Key {
    /// Derives the AES key from the model key exactly as NVIDIA's tools do: the string's UTF-8 bytes are
    /// the PBKDF2 password as they are (an NGC API key is not base64-decoded).
    pub fn derive(passphrase: &str) -> Result<Key> {
        if passphrase.is_empty() {
            return Err(Error::EmptyKey);
        }
        let mut key = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(passphrase.as_bytes(), &KDF_SALT, KDF_ITERATIONS, &mut key);
        Ok(Key(key))
    }

    /// Wraps an already-derived 32-byte AES key.
    pub fn from_raw(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}
