//! AES-256-CTR with the whole 16-byte counter block as one 128-bit big-endian integer (NVIDIA's
//! scheme). Large buffers are split across threads: CTR positions are independent, so each thread
//! seeks its own cipher to its offset and the bytes are identical to a sequential pass.

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

use crate::header::NONCE_LEN;
use crate::key::Key;

type Ctr = ctr::Ctr128BE<Aes256>;

/// Below this, one thread is faster than starting more.
const PARALLEL_MIN: usize = 1 << 20;

/// A keystream at a byte position; XORs itself into buffers.
pub struct Keystream {
    key: Key,
    nonce: [u8; NONCE_LEN],
    /// Bytes of keystream consumed so far.
    position: u64,
    threads: usize,
}

impl Keystream {
    pub fn new(key: &Key, nonce: &[u8; NONCE_LEN]) -> Keystream {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Keystream {
            key: key.clone(),
            nonce: *nonce,
            position: 0,
            threads,
        }
    }

    /// Limits the threads used for large buffers (1 = sequential).
    pub fn with_threads(mut self, threads: usize) -> Keystream {
        self.threads = threads.max(1);
        self
    }

    fn cipher_at(&self, position: u64) -> Ctr {
        let mut cipher = Ctr::new(self.key.as_bytes().into(), (&self.nonce).into());
        cipher.seek(position);
        cipher
    }

    /// Encrypts or decrypts `data` in place and advances the position.
    pub fn apply(&mut self, data: &mut [u8]) {
        let start = self.position;
        if self.threads <= 1 || data.len() < PARALLEL_MIN {
            self.cipher_at(start).apply_keystream(data);
        } else {
            // Chunks on 16-byte boundaries of the stream so no block is shared between threads.
            let per_thread = data.len().div_ceil(self.threads).next_multiple_of(16);
            std::thread::scope(|scope| {
                for (i, chunk) in data.chunks_mut(per_thread).enumerate() {
                    let at = start + (i * per_thread) as u64;
                    let mut cipher = self.cipher_at(at);
                    scope.spawn(move || cipher.apply_keystream(chunk));
                }
            });
        }
        self.position += data.len() as u64;
    }
}
