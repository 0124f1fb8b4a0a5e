//! An output file written as `<name>.part` and renamed to `<name>` only when it is complete, so
//! that a failed or abandoned rendition leaves no truncated file under its final name. Dropping
//! a `PartFile` that was not committed removes the `.part`.
//!
//! Standard library only: the push-output fuzz target and tests include this file as it is.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// `<path>.part`.
pub fn part_path(path: &Path) -> PathBuf {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    PathBuf::from(part)
}

#[derive(Debug)]
pub struct PartFile {
    path: PathBuf,
    part: PathBuf,
    file: Option<BufWriter<File>>,
}

impl PartFile {
    /// Creates (or truncates) `<path>.part`.
    pub fn create(path: PathBuf) -> std::io::Result<PartFile> {
        let part = part_path(&path);
        let file = BufWriter::with_capacity(256 * 1024, File::create(&part)?);
        Ok(PartFile { path, part, file: Some(file) })
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?.write_all(data)
    }

    /// Flushes and renames the `.part` to the final name (once; later calls do nothing). On an
    /// error the `.part` is removed.
    pub fn commit(&mut self) -> std::io::Result<()> {
        let Some(mut f) = self.file.take() else { return Ok(()) };
        let done = f.flush().and_then(|()| std::fs::rename(&self.part, &self.path));
        if done.is_err() {
            drop(f);
            let _ = std::fs::remove_file(&self.part);
        }
        done
    }

    /// Closes and removes the `.part` (when not committed).
    pub fn discard(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        self.discard();
    }
}
