use std::path::PathBuf;

use crate::PayloadKind;

/// Everything that can go wrong reading or writing an `.etlt` container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("file is {len} bytes, shorter than the 4-byte .etlt header")]
    TooShort { len: u64 },
    #[error("input-name length in the .etlt header is negative ({0}): not a TAO .etlt file")]
    NegativeNameLength(i32),
    #[error(
        "input-name length in the .etlt header is {declared} bytes but {available} bytes follow it: not a TAO .etlt file, or truncated"
    )]
    OversizedName { declared: u64, available: u64 },
    #[error("input-name length in the .etlt header is {0} bytes, more than the {max} allowed", max = crate::header::MAX_NAME_LEN)]
    NameTooLong(u32),
    #[error("input name in the .etlt header is not UTF-8")]
    NameNotUtf8,
    #[error("the 16-byte nonce is missing: the file ends {available} bytes after the input name")]
    MissingNonce { available: u64 },
    #[error(
        "decryption produced no valid {kind} model: the key is probably wrong (or the file is not a TAO .etlt)"
    )]
    WrongKey { kind: PayloadKind },
    #[error("the key is empty")]
    EmptyKey,
    #[error("input name must not be empty for a UFF payload and must be at most {max} bytes", max = crate::header::MAX_NAME_LEN)]
    BadInputName,
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Attaches the file this error came from, so messages name it.
    pub fn in_file(self, path: impl Into<PathBuf>) -> Error {
        match self {
            Error::File { .. } => self,
            other => Error::File {
                path: path.into(),
                source: Box::new(other),
            },
        }
    }

    /// The error without file context: what went wrong.
    pub fn cause(&self) -> &Error {
        match self {
            Error::File { source, .. } => source.cause(),
            other => other,
        }
    }

    /// True when the decrypted bytes were not a model, i.e. the key is most likely wrong.
    pub fn is_wrong_key(&self) -> bool {
        matches!(self.cause(), Error::WrongKey { .. })
    }
}

pub type Result<T> = std::result::Result<T, Error>;
