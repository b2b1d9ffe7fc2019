//! Streaming decode and encode in constant memory, for models larger than one wants in RAM.

use std::io::{Read, Write};

use crate::error::{Error, Result};
use crate::header::{Header, NONCE_LEN, read_up_to};
use crate::key::Key;
use crate::keystream::Keystream;
use crate::payload::{PREFIX_LEN, PayloadKind, prefix_looks_valid};

/// Chunk size of the streaming copy loops: large enough to keep several threads busy.
const CHUNK: usize = 4 << 20;

/// What a streaming decode found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    pub kind: PayloadKind,
    pub input_name: String,
    pub payload_len: u64,
}

/// A reader of the decrypted payload. Construction reads the header and checks the first bytes of
/// plaintext, so a wrong key fails here, before any output is produced.
pub struct Decryptor<R> {
    reader: R,
    header: Header,
    keystream: Keystream,
    /// Plaintext already decrypted during validation, served first.
    pending: Vec<u8>,
    pending_pos: usize,
}

impl<R: Read> Decryptor<R> {
    pub fn new(mut reader: R, key: &Key) -> Result<Decryptor<R>> {
        let header = Header::read_from(&mut reader)?;
        let mut keystream = Keystream::new(key, &header.nonce);
        let mut prefix = vec![0u8; PREFIX_LEN];
        let got = read_up_to(&mut reader, &mut prefix)?;
        prefix.truncate(got);
        keystream.apply(&mut prefix);
        let kind = PayloadKind::from_input_name(&header.input_name);
        if !prefix_looks_valid(kind, &prefix) {
            return Err(Error::WrongKey { kind });
        }
        Ok(Decryptor {
            reader,
            header,
            keystream,
            pending: prefix,
            pending_pos: 0,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn kind(&self) -> PayloadKind {
        PayloadKind::from_input_name(&self.header.input_name)
    }

    /// Writes the whole remaining payload to `writer`; returns the payload length.
    pub fn copy_to<W: Write + ?Sized>(mut self, writer: &mut W) -> Result<u64> {
        let mut total = (self.pending.len() - self.pending_pos) as u64;
        writer.write_all(&self.pending[self.pending_pos..])?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let got = read_up_to(&mut self.reader, &mut buf)?;
            if got == 0 {
                break;
            }
            self.keystream.apply(&mut buf[..got]);
            writer.write_all(&buf[..got])?;
            total += got as u64;
        }
        writer.flush()?;
        Ok(total)
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending_pos < self.pending.len() {
            let n = buf.len().min(self.pending.len() - self.pending_pos);
            buf[..n].copy_from_slice(&self.pending[self.pending_pos..self.pending_pos + n]);
            self.pending_pos += n;
            return Ok(n);
        }
        let n = self.reader.read(buf)?;
        self.keystream.apply(&mut buf[..n]);
        Ok(n)
    }
}

/// Decrypts an `.etlt` stream into `writer`, checking the payload's first bytes before writing any.
pub fn decrypt_stream<R: Read, W: Write + ?Sized>(
    reader: R,
    writer: &mut W,
    key: &Key,
) -> Result<StreamInfo> {
    let decryptor = Decryptor::new(reader, key)?;
    let kind = decryptor.kind();
    let input_name = decryptor.header().input_name.clone();
    let payload_len = decryptor.copy_to(writer)?;
    Ok(StreamInfo {
        kind,
        input_name,
        payload_len,
    })
}

/// A writer that encrypts what it is given into an `.etlt` stream. The header is written on creation.
pub struct Encryptor<W: Write> {
    writer: W,
    keystream: Keystream,
    buf: Vec<u8>,
}

impl<W: Write> Encryptor<W> {
    /// `input_name` empty makes an ONNX container; non-empty, a UFF one.
    pub fn new(
        mut writer: W,
        key: &Key,
        input_name: &str,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Encryptor<W>> {
        let header = Header {
            input_name: input_name.to_owned(),
            nonce,
        };
        header.write_to(&mut writer)?;
        Ok(Encryptor {
            writer,
            keystream: Keystream::new(key, &nonce),
            buf: Vec::new(),
        })
    }

    /// Flushes and hands back the inner writer.
    pub fn finish(mut self) -> Result<W> {
        self.writer.flush()?;
        Ok(self.writer)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK);
        self.buf.clear();
        self.buf.extend_from_slice(&data[..n]);
        self.keystream.apply(&mut self.buf);
        self.writer.write_all(&self.buf)?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Encrypts all of `reader` into `writer` as an `.etlt`; returns the payload length.
pub fn encrypt_stream<R: Read, W: Write>(
    mut reader: R,
    writer: W,
    key: &Key,
    input_name: &str,
    nonce: [u8; NONCE_LEN],
) -> Result<u64> {
    let mut encryptor = Encryptor::new(writer, key, input_name, nonce)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let got = read_up_to(&mut reader, &mut buf)?;
        if got == 0 {
            break;
        }
        encryptor.write_all(&buf[..got])?;
        total += got as u64;
    }
    encryptor.finish()?;
    Ok(total)
}
