//! AES-256-CTR with the whole 16-byte counter block as one 128-bit big-endian integer (NVIDIA's
//! scheme). Large buffers are split across threads: CTR positions are independent, so each thread
//! seeks its own cipher to its offset and the bytes are identical to a sequential pass.

use aes::Aes256;
use aes::cipher::{Block, BlockCipherEncrypt, KeyInit};

use crate::header::NONCE_LEN;
use crate::key::Key;

/// Keystream blocks produced per AES call: enough for the wide (VAES) paths to run full.
const BLOCKS_PER_BATCH: usize = 256;

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

    /// XORs the keystream starting at byte `position` into `data`.
    fn xor_at(&self, position: u64, data: &mut [u8]) {
        let aes = Aes256::new(self.key.as_bytes().into());
        let first_block = u128::from_be_bytes(self.nonce).wrapping_add(u128::from(position / 16));
        let skip = (position % 16) as usize;
        let mut batch = vec![Block::<Aes256>::default(); BLOCKS_PER_BATCH];
        let mut counter = first_block;
        let mut done = 0usize;
        let mut skip_now = skip;
        while done < data.len() {
            let need = (skip_now + data.len() - done)
                .div_ceil(16)
                .min(BLOCKS_PER_BATCH);
            for block in &mut batch[..need] {
                block.copy_from_slice(&counter.to_be_bytes());
                counter = counter.wrapping_add(1);
            }
            aes.encrypt_blocks(&mut batch[..need]);
            let stream = &Block::<Aes256>::slice_as_flattened(&batch[..need])[skip_now..];
            let take = stream.len().min(data.len() - done);
            xor_into(&mut data[done..done + take], &stream[..take]);
            done += take;
            skip_now = 0;
        }
    }

    /// Encrypts or decrypts `data` in place and advances the position.
    pub fn apply(&mut self, data: &mut [u8]) {
        let start = self.position;
        if self.threads <= 1 || data.len() < PARALLEL_MIN {
            self.xor_at(start, data);
        } else {
            // Chunks on 16-byte boundaries of the stream so no block is shared between threads.
            let per_thread = data.len().div_ceil(self.threads).next_multiple_of(16);
            let this = &*self;
            std::thread::scope(|scope| {
                for (i, chunk) in data.chunks_mut(per_thread).enumerate() {
                    let at = start + (i * per_thread) as u64;
                    scope.spawn(move || this.xor_at(at, chunk));
                }
            });
        }
        self.position += data.len() as u64;
    }
}

/// Word-wide XOR; the compiler vectorises the 8-byte loop.
fn xor_into(data: &mut [u8], stream: &[u8]) {
    let mut data_words = data.chunks_exact_mut(8);
    let mut stream_words = stream.chunks_exact(8);
    for (d, k) in (&mut data_words).zip(&mut stream_words) {
        let x = u64::from_ne_bytes(d.try_into().unwrap_or_default())
            ^ u64::from_ne_bytes(k.try_into().unwrap_or_default());
        d.copy_from_slice(&x.to_ne_bytes());
    }
    for (d, k) in data_words
        .into_remainder()
        .iter_mut()
        .zip(stream_words.remainder())
    {
        *d ^= k;
    }
}
