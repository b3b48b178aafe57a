//! The dump format of `heliograph storage export` and `import`: JSON lines, streamed.
//!
//! ```text
//! {"format":"heliograph-storage-dump","version":2,"backend":"sled"}
//! {"kind":"user","domain":"example.com","local":"alice","credentials":{...}}
//! ...
//! {"end":{"records":123456}}
//! ```
//!
//! The header names the format and its version (an import refuses a version newer than
//! it knows) and the backend that wrote it; records follow in the order of
//! [`crate::backend::KINDS`]; the trailer counts them, so a cut dump is refused rather
//! than half imported. Nothing is held in memory but the current line.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::backend::DumpRecord;
use crate::{Storage, StorageError};

/// The `format` of the header line.
pub const FORMAT: &str = "heliograph-storage-dump";
/// The dump version this build writes and the newest it reads. Version 2 added the
/// message archive, archive preferences and account data (a version-1 dump reads as a
/// version-2 dump without them).
pub const VERSION: u32 = 2;

/// Why a dump could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {message}")]
    Format { line: u64, message: String },
    #[error(
        "dump version {found} is newer than this build reads ({VERSION}); use a newer heliograph"
    )]
    Version { found: u32 },
    #[error("the dump ends after {records} records without its end line: it was cut short")]
    Truncated { records: u64 },
    #[error("the dump's end line counts {expected} records but {found} came before it")]
    Count { expected: u64, found: u64 },
    #[error("the target storage ({backend}) is not empty: import only into an empty store")]
    NotEmpty { backend: &'static str },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    backend: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    end: End,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    records: u64,
}

/// Writes every record of `storage` to `out`; returns how many.
pub fn export(storage: &Storage, out: &mut dyn Write) -> Result<u64, DumpError> {
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        backend: storage.backend.name().into(),
    };
    write_line(out, &header)?;
    let mut io_error = None;
    let result = storage.backend.export(&mut |record| {
        write_line(out, &record).map_err(|e| {
            let message = e.to_string();
            io_error = Some(e);
            StorageError::Backend(format!("writing the dump: {message}"))
        })
    });
    if let Some(e) = io_error {
        return Err(e);
    }
    let records = result?;
    write_line(
        out,
        &Trailer {
            end: End { records },
        },
    )?;
    out.flush()?;
    Ok(records)
}

fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), DumpError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| DumpError::Io(e.into()))?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Reads a dump from `input` into `storage`, which must be empty; returns how many
/// records were imported.
pub fn import(storage: &Storage, input: &mut dyn BufRead) -> Result<u64, DumpError> {
    if !storage.backend.is_empty()? {
        return Err(DumpError::NotEmpty {
            backend: storage.backend.name(),
        });
    }
    let mut reader = Reader {
        input,
        line: 0,
        records: 0,
        done: false,
        error: None,
    };
    reader.header()?;
    let result = storage.backend.import(&mut reader);
    if let Some(e) = reader.error.take() {
        return Err(e);
    }
    let imported = result?;
    Ok(imported)
}

/// The records of a dump, one line at a time; the first format error is kept in `error`
/// (the backend sees only that the stream failed).
struct Reader<'a> {
    input: &'a mut dyn BufRead,
    line: u64,
    records: u64,
    done: bool,
    error: Option<DumpError>,
}

impl Reader<'_> {
    fn next_line(&mut self) -> Result<Option<String>, DumpError> {
        let mut text = String::new();
        if self.input.read_line(&mut text)? == 0 {
            return Ok(None);
        }
        self.line += 1;
        Ok(Some(text))
    }

    fn header(&mut self) -> Result<(), DumpError> {
        let line = self.next_line()?.ok_or(DumpError::Format {
            line: 1,
            message: "empty input: not a dump".into(),
        })?;
        let header: Header = serde_json::from_str(&line).map_err(|e| DumpError::Format {
            line: 1,
            message: format!("not a dump header: {e}"),
        })?;
        if header.format != FORMAT {
            return Err(DumpError::Format {
                line: 1,
                message: format!("format {:?} is not {FORMAT:?}", header.format),
            });
        }
        if header.version > VERSION {
            return Err(DumpError::Version {
                found: header.version,
            });
        }
        Ok(())
    }

    fn record(&mut self) -> Result<Option<DumpRecord>, DumpError> {
        let Some(text) = self.next_line()? else {
            return Err(DumpError::Truncated {
                records: self.records,
            });
        };
        if text.starts_with("{\"end\"") {
            let trailer: Trailer = serde_json::from_str(&text).map_err(|e| DumpError::Format {
                line: self.line,
                message: format!("bad end line: {e}"),
            })?;
            if trailer.end.records != self.records {
                return Err(DumpError::Count {
                    expected: trailer.end.records,
                    found: self.records,
                });
            }
            if self.next_line()?.is_some_and(|l| !l.trim().is_empty()) {
                return Err(DumpError::Format {
                    line: self.line,
                    message: "data after the end line".into(),
                });
            }
            return Ok(None);
        }
        let record = serde_json::from_str(&text).map_err(|e| DumpError::Format {
            line: self.line,
            message: e.to_string(),
        })?;
        self.records += 1;
        Ok(Some(record))
    }
}

impl Iterator for Reader<'_> {
    type Item = Result<DumpRecord, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                let message = e.to_string();
                self.error = Some(e);
                Some(Err(StorageError::Backend(format!(
                    "reading the dump: {message}"
                ))))
            }
        }
    }
}
