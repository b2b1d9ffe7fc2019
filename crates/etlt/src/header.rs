use std::io::{Read, Write};

use crate::error::{Error, Result};

/// Bytes of the AES-CTR initial counter block stored after the input name.
pub const NONCE_LEN: usize = 16;
/// Longest input-node name accepted. Real names are a few dozen bytes; the limit keeps a corrupt
/// length field from asking for gigabytes.
pub const MAX_NAME_LEN: u32 = 64 * 1024;

/// The clear-text part of an `.etlt`: the input-node name and the initial counter block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Name of the model's first input node (UFF only; empty for ONNX payloads).
    pub input_name: String,
    /// Initial AES-CTR counter block.
    pub nonce: [u8; NONCE_LEN],
}

impl Header {
    /// Length of this header on disk.
    pub fn encoded_len(&self) -> usize {
        4 + self.input_name.len() + NONCE_LEN
    }

    /// Parses the header at the start of `data`; returns it and the offset of the ciphertext.
    pub fn parse(data: &[u8]) -> Result<(Header, usize)> {
        let len = data.len() as u64;
        let Some(len_field) = data.get(..4) else {
            return Err(Error::TooShort { len });
        };
        let name_len = checked_name_len(len_field, len - 4)?;
        let name_end = 4 + name_len;
        let input_name = name_from_bytes(&data[4..name_end])?;
        let nonce_bytes = data
            .get(name_end..name_end + NONCE_LEN)
            .ok_or(Error::MissingNonce {
                available: len - name_end as u64,
            })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(nonce_bytes);
        Ok((Header { input_name, nonce }, name_end + NONCE_LEN))
    }

    /// Reads the header from a stream, leaving it positioned at the ciphertext.
    pub fn read_from<R: Read>(reader: &mut R) -> Result<Header> {
        let mut len_field = [0u8; 4];
        let got = read_up_to(reader, &mut len_field)?;
        if got < 4 {
            return Err(Error::TooShort { len: got as u64 });
        }
        // The stream's remaining length is unknown; bound the name by the fixed limit, then by what arrives.
        let name_len = checked_name_len(&len_field, u64::from(MAX_NAME_LEN))?;
        let mut name = vec![0u8; name_len];
        let got = read_up_to(reader, &mut name)?;
        if got < name_len {
            return Err(Error::OversizedName {
                declared: name_len as u64,
                available: got as u64,
            });
        }
        let input_name = name_from_bytes(&name)?;
        let mut nonce = [0u8; NONCE_LEN];
        let got = read_up_to(reader, &mut nonce)?;
        if got < NONCE_LEN {
            return Err(Error::MissingNonce {
                available: got as u64,
            });
        }
        Ok(Header { input_name, nonce })
    }

    pub fn write_to<W: Write>(&self, writer: &mut W) -> Result<()> {
        let name_len = u32::try_from(self.input_name.len())
            .ok()
            .filter(|&n| n <= MAX_NAME_LEN)
            .ok_or(Error::BadInputName)?;
        writer.write_all(&name_len.to_le_bytes())?;
        writer.write_all(self.input_name.as_bytes())?;
        writer.write_all(&self.nonce)?;
        Ok(())
    }
}

fn checked_name_len(len_field: &[u8], available: u64) -> Result<usize> {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(len_field);
    let declared = i32::from_le_bytes(raw);
    let declared = u32::try_from(declared).map_err(|_| Error::NegativeNameLength(declared))?;
    if declared > MAX_NAME_LEN {
        return Err(Error::NameTooLong(declared));
    }
    if u64::from(declared) > available {
        return Err(Error::OversizedName {
            declared: declared.into(),
            available,
        });
    }
    Ok(declared as usize)
}

fn name_from_bytes(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::NameNotUtf8)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(crate) fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
