//! The load during a chaos run: `tfsctl bench` processes through the VIP, each recording every
//! acknowledged mutation (`--record`), and a tail of each record that follows their progress
//! without reading the whole file again.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use ::tfsctl::record::Ack;
use anyhow::{Result, bail};

use super::heal::Heal;
use crate::tfsctl;

/// One bench process; killed when stopped, dropped, or when the run is interrupted.
pub struct BenchWriter {
    pub name: String,
    pub record: PathBuf,
    /// Every operation with its times, for a mixed writer (`--history`).
    pub history: Option<PathBuf>,
    pub log: PathBuf,
    pid: u32,
    child: Option<Child>,
    guard: Option<Heal>,
    pub tail: RecordTail,
}

impl BenchWriter {
    /// `op` is a `tfsctl bench --op`; `extra` more bench flags.
    pub fn start(vip: &str, dir: &Path, name: &str, op: &str, extra: &[&str]) -> Result<BenchWriter> {
        let record = dir.join(format!("acked-{name}"));
        let log = dir.join(format!("writer-{name}.log"));
        let f = std::fs::File::create(&log)?;
        let history = (op == "mixed").then(|| dir.join(format!("history-{name}")));
        let child = Command::new(tfsctl())
            .args(["--addr", vip, "bench", "--op", op, "--count", "1000000000", "--retry-for", "600s"])
            .args(["--record", record.to_str().expect("utf-8 path")])
            .args(history.iter().flat_map(|h| [std::ffi::OsStr::new("--history"), h.as_os_str()]))
            .args(extra)
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        let pid = child.id();
        let guard = Heal::new(format!("writer {name} (pid {pid})"), move || {
            super::heal::quiet_signal(pid, "KILL");
        });
        Ok(BenchWriter {
            name: name.into(),
            tail: RecordTail::new(&record),
            record,
            history,
            log,
            pid,
            child: Some(child),
            guard: Some(guard),
        })
    }

    /// Fails if the bench process is gone (it exits on an error it cannot retry).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(st) = c.try_wait()?
        {
            bail!(
                "writer {} (pid {}) exited ({st}):\n{}",
                self.name,
                self.pid,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Stops the bench; its record keeps every acknowledgement it flushed (a torn last line is
    /// ignored by `tfsctl verify`).
    pub fn stop(&mut self) {
        if let Some(g) = self.guard.take() {
            g.heal();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for BenchWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Follows a record file as it grows: lines, and the last acknowledgement's epoch and time.
#[derive(Debug, Clone)]
pub struct RecordTail {
    path: PathBuf,
    offset: u64,
    partial: String,
    pub lines: u64,
    pub last_epoch: u64,
    pub last_acked_ms: u64,
    /// The longest gap between acknowledgements since `mark`, counted from the mark.
    mark_ms: u64,
    prev_ms: u64,
    pub max_gap_since_mark_ms: u64,
}

impl RecordTail {
    pub fn new(path: &Path) -> RecordTail {
        RecordTail {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
            lines: 0,
            last_epoch: 0,
            last_acked_ms: 0,
            mark_ms: 0,
            prev_ms: 0,
            max_gap_since_mark_ms: 0,
        }
    }

    /// Starts measuring gaps from `t_ms` (a fault).
    pub fn mark(&mut self, t_ms: u64) {
        self.mark_ms = t_ms;
        self.prev_ms = t_ms;
        self.max_gap_since_mark_ms = 0;
    }

    /// Reads what was appended since the last poll.
    pub fn poll(&mut self) -> Result<()> {
        let Ok(mut f) = std::fs::File::open(&self.path) else { return Ok(()) };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = String::new();
        let n = f.read_to_string(&mut buf)? as u64;
        self.offset += n;
        self.partial.push_str(&buf);
        let Some(end) = self.partial.rfind('\n') else { return Ok(()) };
        let complete: String = self.partial.drain(..=end).collect();
        for line in complete.lines() {
            self.take(line);
        }
        Ok(())
    }

    /// One record line (tfsctl's record format, [`Ack`]); a line that does not parse is skipped.
    fn take(&mut self, line: &str) {
        let Ok(a) = Ack::parse(line) else { return };
        self.lines += 1;
        if a.acked_ms >= self.last_acked_ms {
            self.last_acked_ms = a.acked_ms;
            self.last_epoch = a.epoch;
        }
        if self.mark_ms > 0 && a.acked_ms > self.prev_ms {
            self.max_gap_since_mark_ms = self.max_gap_since_mark_ms.max(a.acked_ms - self.prev_ms);
            self.prev_ms = a.acked_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_tail_follows_appends_and_torn_lines() {
        let dir = std::env::temp_dir().join(format!("chaos-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("acked");
        let mut f = std::fs::File::create(&p).unwrap();
        let mut t = RecordTail::new(&p);
        write!(f, "C 1 3 10 1000 1005\nC 2 3 11 1001 1006\nM 9 4 3 12 10").unwrap();
        t.poll().unwrap();
        assert_eq!((t.lines, t.last_epoch, t.last_acked_ms), (2, 3, 1006));
        t.mark(2000);
        write!(f, "02 1010\nC 3 4 13 2000 2500\nC 4 4 14 2500 2600\n").unwrap();
        t.poll().unwrap();
        assert_eq!((t.lines, t.last_epoch, t.last_acked_ms), (5, 4, 2600));
        assert_eq!(t.max_gap_since_mark_ms, 500);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
