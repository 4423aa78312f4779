//! One write-ahead file of the usage log, mapped into memory.
//!
//! Every answered request's note must reach the page cache before its
//! answer goes out. A `write(2)` per request cost about 3% of a
//! features-on request; a copy into a shared mapping reaches the same page
//! cache (it survives the process dying, as a written byte does) without a
//! system call. `fdatasync` on the file writes mapped pages back too.
//!
//! The file is filled with zeros before it is mapped, so its blocks exist:
//! a full disk fails that write (an error the log reports) instead of
//! faulting the process when a page of a sparse mapping is first touched.
//! Readers stop at the padding: notes are JSON lines, which never hold a
//! NUL byte.

// The project's one unsafe block: mapping a file (see `map` below).
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use memmap2::MmapMut;

/// Zeros are written in pieces of this size.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

pub struct Segment {
    file: File,
    map: MmapMut,
    len: usize,
}

impl Segment {
    /// A new, zero-filled file of `cap` bytes at `path` (replacing any).
    pub fn create(path: &Path, cap: usize) -> io::Result<Segment> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        fill(&mut file, cap)?;
        let map = map(&file)?;
        Ok(Segment { file, map, len: 0 })
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends `bytes`, growing the file when they do not fit. On error
    /// nothing of them was written.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.len + bytes.len();
        if end > self.map.len() {
            self.grow(end)?;
        }
        self.map[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Puts the bytes from `from` to the end on disk.
    pub fn sync_from(&self, from: usize) -> io::Result<()> {
        if from >= self.len {
            return Ok(());
        }
        self.map.flush_range(from, self.len - from)
    }

    /// A handle for syncing the file without holding the log's lock.
    pub fn handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    fn grow(&mut self, need: usize) -> io::Result<()> {
        let cap = self.map.len();
        // The file's position is its end: `fill` left it there.
        fill(&mut self.file, need.max(cap * 2) - cap)?;
        self.map = map(&self.file)?;
        Ok(())
    }
}

fn fill(file: &mut File, mut n: usize) -> io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len());
        file.write_all(&ZEROS[..k])?;
        n -= k;
    }
    Ok(())
}

fn map(file: &File) -> io::Result<MmapMut> {
    // SAFETY: the mapping is only ever read and written through this
    // `Segment`, and the file is never shortened while mapped: Sluice only
    // appends zeros to it (then maps it anew) or deletes it, which keeps
    // the pages of an open mapping valid. Another process truncating the
    // usage log's files would fault this one, as with any mapped file.
    // Not populated: Linux populates a shared mapping read-only, so the
    // first write to each page would fault all the same.
    unsafe { MmapMut::map_mut(file) }
}

/// The part of a write-ahead file's bytes that holds notes.
pub fn written(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_grow_the_file_and_read_back_without_the_padding() {
        let path = std::env::temp_dir().join(format!("sluice-wal-{}", std::process::id()));
        let mut s = Segment::create(&path, 8).unwrap();
        s.append(b"{\"a\":1}\n").unwrap();
        s.append(b"{\"b\":22}\n").unwrap();
        s.append(&[b'x'; 40]).unwrap();
        assert_eq!(s.len(), 57);
        s.sync_from(8).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk.len() >= 57);
        let mut want = b"{\"a\":1}\n{\"b\":22}\n".to_vec();
        want.extend([b'x'; 40]);
        assert_eq!(written(&on_disk), &want[..]);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}
