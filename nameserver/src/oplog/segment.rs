//! Segment files: `<dir>/<first seq, 20 digits>.seg`, each a concatenation of records.
//! A segment is named by the seq of its first record, so the files sorted by name are the log in
//! order and the segment holding a seq is found without opening any file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::record::{self, Record, RecordError};

pub const SUFFIX: &str = ".seg";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub first_seq: u64,
    pub path: PathBuf,
}

pub fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SUFFIX}")
}

/// Lists the segments of `dir` in log order. Files that are not segments are ignored.
pub fn list(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SUFFIX) else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        if let Ok(first_seq) = stem.parse::<u64>() {
            out.push(Segment { first_seq, path: entry.path() });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// What scanning a segment's bytes found.
#[derive(Debug)]
pub enum ScanEnd {
    /// Every byte belonged to a whole, valid record.
    Clean,
    /// Scanning stopped at `offset` with `error`.
    Bad { offset: usize, error: RecordError },
}

/// Decodes records from `data` in order, calling `visit` on each, until the end or the first bad
/// record. Never skips: everything after a bad record is left unvisited.
pub fn scan(data: &Bytes, mut visit: impl FnMut(Record, usize) -> Result<(), ScanStop>) -> Result<ScanEnd, ScanStop> {
    let mut offset = 0;
    while offset < data.len() {
        match record::decode(&data.slice(offset..)) {
            Ok((rec, n)) => {
                visit(rec, offset)?;
                offset += n;
            }
            Err(error) => return Ok(ScanEnd::Bad { offset, error }),
        }
    }
    Ok(ScanEnd::Clean)
}

/// A visitor's reason to stop a scan early (an error it found in an otherwise valid record).
#[derive(Debug)]
pub struct ScanStop(pub String);

/// True when the bad bytes at `offset` are what a crash mid-append leaves: a record cut short by
/// the end of the file, a last record whose crc does not match, or zero fill. Anything else in the
/// middle of the data is corruption, which must stop the start.
pub fn is_torn_tail(data: &[u8], offset: usize, error: &RecordError) -> bool {
    let rest = &data[offset..];
    if error.is_incomplete() || rest.iter().all(|&b| b == 0) {
        return true;
    }
    if let RecordError::BadCrc { .. } = error
        && let Ok(h) = record::decode_header(rest)
    {
        return record::HEADER_LEN + h.len as usize == rest.len();
    }
    false
}

/// Reads records in order from the segment files, for a slave that is further behind than the
/// in-memory feed. Each segment is read once, not once per chunk.
pub struct Cursor {
    dir: PathBuf,
    seg_first: u64,
    /// Bytes of the segment from file offset `base` on.
    data: Bytes,
    base: u64,
    offset: usize,
    next_seq: u64,
}

impl Cursor {
    /// A cursor at `from`, or `None` if the segments holding it were removed.
    pub fn seek(dir: &Path, from: u64) -> io::Result<Option<Cursor>> {
        let segs = list(dir)?;
        let Some(seg) = segs.iter().rev().find(|s| s.first_seq <= from) else {
            return Ok(None);
        };
        let mut c = Cursor {
            dir: dir.to_path_buf(),
            seg_first: seg.first_seq,
            data: Bytes::from(fs::read(&seg.path)?),
            base: 0,
            offset: 0,
            next_seq: seg.first_seq,
        };
        while c.next_seq < from {
            match record::decode(&c.data.slice(c.offset..)) {
                Ok((_, n)) => {
                    c.offset += n;
                    c.next_seq += 1;
                }
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(c))
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The next whole records, about `max_bytes` of them: `(bytes, first seq, last seq)`.
    pub fn next_chunk(&mut self, max_bytes: usize) -> Result<Option<(Bytes, u64, u64)>, String> {
        for _ in 0..2 {
            let start = self.offset;
            let first = self.next_seq;
            while self.offset - start < max_bytes {
                match record::decode(&self.data.slice(self.offset..)) {
                    Ok((r, n)) => {
                        if r.header.seq != self.next_seq {
                            return Err(format!(
                                "segment {}: seq {} where {} was expected",
                                self.seg_first, r.header.seq, self.next_seq
                            ));
                        }
                        self.offset += n;
                        self.next_seq += 1;
                    }
                    Err(e) if e.is_incomplete() => break,
                    Err(e) => {
                        return Err(format!("segment {} offset {}: {e}", self.seg_first, self.offset));
                    }
                }
            }
            if self.offset > start {
                return Ok(Some((self.data.slice(start..self.offset), first, self.next_seq - 1)));
            }
            // End of what was loaded: the next segment, or the rest of a growing active one.
            let segs = list(&self.dir).map_err(|e| e.to_string())?;
            match segs.iter().find(|s| s.first_seq == self.next_seq) {
                Some(next) => {
                    self.seg_first = next.first_seq;
                    self.data = Bytes::from(fs::read(&next.path).map_err(|e| e.to_string())?);
                    self.base = 0;
                    self.offset = 0;
                }
                None => {
                    // The active segment grew: read only what follows the last whole record.
                    use std::io::{Read, Seek, SeekFrom};
                    let path = self.dir.join(file_name(self.seg_first));
                    let at = self.base + self.offset as u64;
                    let mut f = fs::File::open(&path).map_err(|e| e.to_string())?;
                    f.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
                    let mut rest = Vec::new();
                    f.read_to_end(&mut rest).map_err(|e| e.to_string())?;
                    self.data = Bytes::from(rest);
                    self.base = at;
                    self.offset = 0;
                }
            }
        }
        Ok(None)
    }
}
