//! Uploaded files (XEP-0363) behind a small trait, [`FileStore`], so that an
//! S3-compatible store can follow the disk one ([`DiskFiles`]).
//!
//! A file is addressed by a [`FileKey`]: tenant, owner (the uploader's bare JID), a
//! random id and the file name. A file is written through a [`FileSink`] chunk by chunk
//! (never held whole in memory) and becomes visible only when the sink is committed; a
//! sink dropped before that leaves nothing behind. Every part of a key is checked
//! ([`FileKey::new`]) so that no name can reach outside its folder.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// Why a key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileKeyError {
    #[error("the {0} is empty or longer than 255 bytes")]
    Length(&'static str),
    #[error("the {0} contains a path separator, a control character or is a dot name")]
    Unsafe(&'static str),
}

/// Where one file lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub tenant: String,
    /// The uploader's bare JID.
    pub owner: String,
    /// Random, unguessable.
    pub id: String,
    pub name: String,
}

fn check_part(value: &str, what: &'static str) -> Result<(), FileKeyError> {
    if value.is_empty() || value.len() > 255 {
        return Err(FileKeyError::Length(what));
    }
    let unsafe_char = |c: char| c == '/' || c == '\\' || c == '\0' || c.is_control();
    if value == "." || value == ".." || value.starts_with('.') || value.contains(unsafe_char) {
        return Err(FileKeyError::Unsafe(what));
    }
    Ok(())
}

impl FileKey {
    /// A key whose parts are each one safe path segment (no `/`, `\`, control
    /// characters, no leading dot: no `..`).
    pub fn new(tenant: &str, owner: &str, id: &str, name: &str) -> Result<FileKey, FileKeyError> {
        check_part(tenant, "tenant")?;
        check_part(owner, "owner")?;
        check_part(id, "id")?;
        check_part(name, "file name")?;
        Ok(FileKey {
            tenant: tenant.into(),
            owner: owner.into(),
            id: id.into(),
            name: name.into(),
        })
    }
}

/// What is kept beside a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub size: u64,
    pub content_type: String,
}

/// A file being written.
pub trait FileSink: Send {
    /// Appends a chunk.
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, io::Result<()>>;
    /// Makes the file visible with its metadata. Dropping the sink instead discards it.
    fn commit(self: Box<Self>, meta: FileMeta) -> BoxFuture<'static, io::Result<()>>;
}

/// A stored file, opened for reading.
pub struct StoredFile {
    pub meta: FileMeta,
    pub reader: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
}

/// Stored files.
pub trait FileStore: Send + Sync {
    /// Starts writing `key`; `AlreadyExists` if a file is stored there (or being written).
    fn create<'a>(&'a self, key: &'a FileKey) -> BoxFuture<'a, io::Result<Box<dyn FileSink>>>;
    /// Opens a committed file, `None` if there is none.
    fn open<'a>(&'a self, key: &'a FileKey) -> BoxFuture<'a, io::Result<Option<StoredFile>>>;
    /// Bytes stored for the tenant, or for one owner of it.
    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, io::Result<u64>>;
    /// Deletes every file of an owner (a deleted account).
    fn delete_owner<'a>(&'a self, tenant: &'a str, owner: &'a str)
    -> BoxFuture<'a, io::Result<()>>;
    /// Deletes every file of a tenant (a purged tenant).
    fn delete_tenant<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// Deletes the tenant's files stored longer ago than `age`; returns how many.
    fn expire<'a>(&'a self, tenant: &'a str, age: Duration) -> BoxFuture<'a, io::Result<usize>>;
}

/// [`FileStore`] on the local disk: `<root>/<tenant>/<owner>/<id>/<name>`, with the
/// metadata in `<id>/.meta` and files written as `<id>/.part` until committed.
pub struct DiskFiles {
    root: PathBuf,
}

const META: &str = ".meta";
const PART: &str = ".part";

impl DiskFiles {
    pub fn new(root: impl Into<PathBuf>) -> DiskFiles {
        DiskFiles { root: root.into() }
    }

    fn dir(&self, key: &FileKey) -> PathBuf {
        self.root.join(&key.tenant).join(&key.owner).join(&key.id)
    }
}

struct DiskSink {
    file: Option<tokio::fs::File>,
    dir: PathBuf,
    name: String,
    committed: bool,
}

impl FileSink for DiskSink {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match self.file.as_mut() {
                Some(f) => f.write_all(chunk).await,
                None => Err(io::Error::other("file already closed")),
            }
        })
    }

    fn commit(mut self: Box<Self>, meta: FileMeta) -> BoxFuture<'static, io::Result<()>> {
        Box::pin(async move {
            let mut file = self.file.take().ok_or_else(|| io::Error::other("closed"))?;
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            let meta_json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
            tokio::fs::write(self.dir.join(META), meta_json).await?;
            tokio::fs::rename(self.dir.join(PART), self.dir.join(&self.name)).await?;
            self.committed = true;
            Ok(())
        })
    }
}

impl Drop for DiskSink {
    fn drop(&mut self) {
        if !self.committed {
            // Nothing of an unfinished upload is kept.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sums the sizes of committed files under `dir` (an upload in progress, still a
/// `.part` file, holds its room by a reservation of the HTTP listener instead).
fn dir_usage(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            total += dir_usage(&entry.path())?;
        } else if entry.file_name() != META && entry.file_name() != PART {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Deletes the `<owner>/<id>` folders of `tenant_dir` whose metadata is older than `cutoff`.
fn expire_dir(tenant_dir: &Path, cutoff: SystemTime) -> io::Result<usize> {
    let mut removed = 0;
    let owners = match std::fs::read_dir(tenant_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for owner in owners {
        let owner = owner?;
        if !owner.file_type()?.is_dir() {
            continue;
        }
        for id in std::fs::read_dir(owner.path())? {
            let id = id?;
            let meta = id.path().join(META);
            let stamp = std::fs::metadata(&meta).and_then(|m| m.modified());
            if stamp.is_ok_and(|t| t < cutoff) {
                remove_dir(&id.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

async fn blocking_io<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

impl FileStore for DiskFiles {
    fn create<'a>(&'a self, key: &'a FileKey) -> BoxFuture<'a, io::Result<Box<dyn FileSink>>> {
        Box::pin(async move {
            let dir = self.dir(key);
            tokio::fs::create_dir_all(&dir).await?;
            if tokio::fs::try_exists(dir.join(META)).await? {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file is stored at this key",
                ));
            }
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(PART))
                .await?;
            Ok(Box::new(DiskSink {
                file: Some(file),
                dir,
                name: key.name.clone(),
                committed: false,
            }) as Box<dyn FileSink>)
        })
    }

    fn open<'a>(&'a self, key: &'a FileKey) -> BoxFuture<'a, io::Result<Option<StoredFile>>> {
        Box::pin(async move {
            let dir = self.dir(key);
            let meta = match tokio::fs::read(dir.join(META)).await {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let meta: FileMeta = serde_json::from_slice(&meta).map_err(io::Error::other)?;
            match tokio::fs::File::open(dir.join(&key.name)).await {
                Ok(f) => Ok(Some(StoredFile {
                    meta,
                    reader: Box::new(f),
                })),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, io::Result<u64>> {
        let mut dir = self.root.join(tenant);
        if let Some(o) = owner {
            dir.push(o);
        }
        Box::pin(blocking_io(move || dir_usage(&dir)))
    }

    fn delete_owner<'a>(
        &'a self,
        tenant: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, io::Result<()>> {
        let dir = self.root.join(tenant).join(owner);
        Box::pin(blocking_io(move || remove_dir(&dir)))
    }

    fn delete_tenant<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, io::Result<()>> {
        let dir = self.root.join(tenant);
        Box::pin(blocking_io(move || remove_dir(&dir)))
    }

    fn expire<'a>(&'a self, tenant: &'a str, age: Duration) -> BoxFuture<'a, io::Result<usize>> {
        let dir = self.root.join(tenant);
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Box::pin(blocking_io(move || expire_dir(&dir, cutoff)))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[test]
    fn keys_refuse_traversal_and_separators() {
        for bad in [
            "..",
            ".",
            "a/b",
            "a\\b",
            ".hidden",
            "",
            "a\0b",
            "line\nbreak",
        ] {
            assert!(FileKey::new("t", "o@x", "id", bad).is_err(), "{bad:?}");
        }
        assert!(FileKey::new("t", "o@x", "id", "photo 1.png").is_ok());
    }

    #[tokio::test]
    async fn committed_files_are_read_back_dropped_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskFiles::new(dir.path());
        let key = FileKey::new("acme", "alice@acme.test", "id1", "a.bin").unwrap();
        let mut sink = store.create(&key).await.unwrap();
        sink.write(b"hello ").await.unwrap();
        sink.write(b"world").await.unwrap();
        let meta = FileMeta {
            size: 11,
            content_type: "text/plain".into(),
        };
        sink.commit(meta.clone()).await.unwrap();
        let mut file = store.open(&key).await.unwrap().unwrap();
        assert_eq!(file.meta, meta);
        let mut data = Vec::new();
        file.reader.read_to_end(&mut data).await.unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(store.usage("acme", None).await.unwrap(), 11);
        assert_eq!(store.usage("acme", Some("bob@acme.test")).await.unwrap(), 0);

        let cut = FileKey::new("acme", "alice@acme.test", "id2", "b.bin").unwrap();
        let mut sink = store.create(&cut).await.unwrap();
        sink.write(b"partial").await.unwrap();
        // An upload in progress is not counted (its PUT holds a reservation instead).
        assert_eq!(store.usage("acme", None).await.unwrap(), 11);
        drop(sink);
        assert!(store.open(&cut).await.unwrap().is_none());
        assert!(!dir.path().join("acme/alice@acme.test/id2").exists());

        assert_eq!(
            store
                .expire("acme", Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.expire("acme", Duration::ZERO).await.unwrap(), 1);
        assert!(store.open(&key).await.unwrap().is_none());
        store.delete_tenant("acme").await.unwrap();
        assert!(!dir.path().join("acme").exists());
    }
}
