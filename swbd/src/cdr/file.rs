//! The CDR file: one JSON object per line, rotated by size
//! (`cdr.jsonl` -> `cdr.jsonl.1` -> ... -> `cdr.jsonl.N`), and read back
//! newest line first for the history.
//!
//! Writes are blocking `std::fs` calls made on tokio's blocking pool by
//! the writer task (never on a call's task). The file is created mode
//! 0600: who called whom is personal data.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A line longer than this is not a record of ours: skipped on read.
const MAX_LINE: usize = 1024 * 1024;
/// Bytes read per step when reading backwards.
const CHUNK: usize = 64 * 1024;

/// The appending end of the CDR file.
#[derive(Debug)]
pub struct FileWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    keep: u32,
    fsync: bool,
}

impl FileWriter {
    /// A writer of `path` (opened on first write).
    pub fn new(path: PathBuf, max_bytes: u64, keep: u32, fsync: bool) -> Self {
        Self {
            path,
            file: None,
            size: 0,
            max_bytes,
            keep,
            fsync,
        }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .mode(0o600)
                .open(&self.path)?;
            let size = file.metadata()?.len();
            self.size = size;
            if size > 0 {
                // A crash in the middle of a line leaves it unfinished: the
                // next record starts on a line of its own (readers skip the
                // broken one).
                let mut last = [0u8; 1];
                file.seek(SeekFrom::Start(size - 1))?;
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    file.write_all(b"\n")?;
                    self.size += 1;
                }
            }
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("CDR file not open"))
    }

    /// Append `lines` (each without its newline). When this returns Ok,
    /// every line was accepted by the kernel (and synced with `fsync`).
    pub fn append(&mut self, lines: &[String]) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::new();
        for line in lines {
            let len = line.len() as u64 + 1;
            if self.size + buf.len() as u64 + len > self.max_bytes
                && self.size + buf.len() as u64 > 0
            {
                self.write_out(&buf)?;
                buf.clear();
                self.rotate()?;
            }
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        self.write_out(&buf)
    }

    fn write_out(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let fsync = self.fsync;
        let result = self.open().and_then(|f| {
            f.write_all(buf)?;
            f.flush()?;
            if fsync {
                f.sync_data()?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.size += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Reopen next time (a file deleted or a disk remounted).
                self.file = None;
                Err(e)
            }
        }
    }

    /// `path` -> `path.1`, `path.1` -> `path.2`, ...; `path.keep` is deleted.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        self.size = 0;
        if self.keep == 0 {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let _ = std::fs::remove_file(rotated(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))
    }
}

/// `cdr.jsonl.N`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The CDR files newest first: `path`, `path.1`, ... `path.keep`.
pub fn files_newest_first(path: &Path, keep: u32) -> Vec<PathBuf> {
    std::iter::once(path.to_path_buf())
        .chain((1..=keep).map(|n| rotated(path, n)))
        .collect()
}

/// Call `f` with each line of `path`, last line first, until it returns
/// `false` or `budget` bytes were read. Returns the bytes read and whether
/// the budget ran out before the file's start. A missing file has no lines.
pub fn lines_backwards(
    path: &Path,
    budget: u64,
    mut f: impl FnMut(&[u8]) -> bool,
) -> io::Result<(u64, bool)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, false)),
        Err(e) => return Err(e),
    };
    let mut pos = file.metadata()?.len();
    let mut used: u64 = 0;
    // The end of a line whose start is in a chunk not read yet.
    let mut carry: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    while pos > 0 {
        if used >= budget {
            return Ok((used, true));
        }
        let n = (CHUNK as u64).min(pos) as usize;
        pos -= n as u64;
        used += n as u64;
        file.seek(SeekFrom::Start(pos))?;
        let buf = chunk
            .get_mut(..n)
            .ok_or_else(|| io::Error::other("chunk"))?;
        file.read_exact(buf)?;
        let mut data = Vec::with_capacity(n + carry.len());
        data.extend_from_slice(buf);
        data.extend_from_slice(&carry);
        let mut end = data.len();
        // Every complete line in `data` (the first may continue earlier).
        while let Some(nl) = data
            .get(..end)
            .and_then(|d| d.iter().rposition(|b| *b == b'\n'))
        {
            let line = data.get(nl + 1..end).unwrap_or_default();
            if !line.is_empty() && line.len() <= MAX_LINE && !f(line) {
                return Ok((used, false));
            }
            end = nl;
        }
        carry = data.get(..end).unwrap_or_default().to_vec();
        if carry.len() > MAX_LINE {
            carry.clear();
        }
    }
    if !carry.is_empty() && carry.len() <= MAX_LINE {
        f(&carry);
    }
    Ok((used, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("swbd-cdr-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn read_back(path: &Path) -> Vec<String> {
        let mut out = Vec::new();
        lines_backwards(path, u64::MAX, |l| {
            out.push(String::from_utf8_lossy(l).into_owned());
            true
        })
        .expect("read");
        out
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let d = dir("rotate");
        let path = d.join("sub/cdr.jsonl");
        let mut w = FileWriter::new(path.clone(), 100, 2, false);
        for i in 0..12 {
            w.append(&[format!("{{\"n\":{i},\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}")])
                .expect("append");
        }
        let sizes: Vec<u64> = files_newest_first(&path, 3)
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .collect();
        assert!(sizes[0] > 0 && sizes[0] <= 100, "{sizes:?}");
        assert!(sizes[1] > 0 && sizes[2] > 0, "{sizes:?}");
        assert_eq!(sizes[3], 0, "keep: 2 rotated files at most");
        assert!(read_back(&path)[0].contains("\"n\":11"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn reads_lines_backwards_across_chunks_and_skips_a_torn_line() {
        let d = dir("back");
        std::fs::create_dir_all(&d).expect("dir");
        let path = d.join("cdr.jsonl");
        let long = "y".repeat(CHUNK + 10);
        let text = format!("first\n{long}\nthird\ntorn-by-a-crash");
        std::fs::write(&path, text).expect("write");
        let lines = read_back(&path);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "torn-by-a-crash");
        assert_eq!(lines[1], "third");
        assert_eq!(lines[2], long);
        assert_eq!(lines[3], "first");
        // A writer appending after the crash starts a fresh line.
        let mut w = FileWriter::new(path.clone(), 1 << 30, 1, true);
        w.append(&["next".into()]).expect("append");
        assert_eq!(read_back(&path)[..2], ["next", "torn-by-a-crash"]);
        // A budget stops the scan early and says so.
        let (used, truncated) = lines_backwards(&path, 10, |_| true).expect("read");
        assert!(truncated && used > 0);
        let _ = std::fs::remove_dir_all(d);
    }
}
