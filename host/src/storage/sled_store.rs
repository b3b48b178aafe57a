//! sled implementation of every store. STUB: being written.

use super::*;

pub fn open(_dir: &std::path::Path) -> StorageResult<Storage> {
    todo!()
}
