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
        let Some(stem) = name.strip_suffix(SUFFIX) else { continue };
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
    if let RecordError::BadCrc { .. } = error {
        if let Ok(h) = record::decode_header(rest) {
            return record::HEADER_LEN + h.len as usize == rest.len();
        }
    }
    false
}
