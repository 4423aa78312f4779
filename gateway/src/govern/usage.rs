//! Usage records: one JSON line per request in an append-only, rotated file.
//!
//! Durability: before a request goes upstream its provisional record (usage
//! = the reservation) is appended to a write-ahead file; when it ends, the
//! final record goes to the log. A restart replays every provisional record
//! that has no final one, so a response that completed is never missing from
//! the log, and never twice in it.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::schema::{Fsync, UsageLogSection};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageRecord {
    /// Request start, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    pub request_id: String,
    pub tenant: Option<String>,
    pub key_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub target: Option<String>,
    pub status: u16,
    pub stream: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
    /// The same cost in nano-USD: exact when spend is rebuilt from the log.
    pub cost_nano_usd: u64,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub upstream_ms: Option<f64>,
    /// Written on restart from the write-ahead file: the request's end was
    /// not recorded, so its reservation is what it is charged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

struct Files {
    log: File,
    log_len: u64,
    wal: File,
    wal_len: u64,
    /// Provisional lines of requests still running, by request id.
    open: HashMap<String, Vec<u8>>,
}

pub struct UsageLog {
    path: PathBuf,
    wal_path: PathBuf,
    fsync: Fsync,
    rotate_size: u64,
    files: Mutex<Files>,
}

/// Rewrite the write-ahead file once it holds this much, keeping only the
/// requests still open.
const WAL_COMPACT: u64 = 16 << 20;

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("usage log: {what} {}: {e}", path.display())
}

fn append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io("cannot open", path, e))
}

impl UsageLog {
    /// Opens the log, replays the write-ahead file, and returns every record
    /// on disk (rotated files included) so spend can be rebuilt.
    pub fn open(cfg: &UsageLogSection) -> Result<(Arc<UsageLog>, Vec<UsageRecord>), String> {
        let path = PathBuf::from(&cfg.path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        }
        let wal_path = path.with_extension("wal");
        let mut records = read_all(&path)?;
        let pending = read_lines(&wal_path)?;
        let mut log = append(&path)?;
        if !pending.is_empty() {
            let done: HashSet<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
            let mut replay = Vec::new();
            for r in pending {
                if !done.contains(r.request_id.as_str())
                    && !replay
                        .iter()
                        .any(|x: &UsageRecord| x.request_id == r.request_id)
                {
                    replay.push(UsageRecord {
                        replayed: true,
                        ..r
                    });
                }
            }
            let mut buf = Vec::new();
            for r in &replay {
                line(&mut buf, r);
            }
            log.write_all(&buf)
                .and_then(|_| log.sync_data())
                .map_err(|e| io("cannot write", &path, e))?;
            if !replay.is_empty() {
                tracing::warn!(
                    count = replay.len(),
                    "usage log: replayed requests whose end was not recorded"
                );
            }
            records.extend(replay);
        }
        let wal = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&wal_path)
            .map_err(|e| io("cannot open", &wal_path, e))?;
        let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
        let me = Arc::new(UsageLog {
            path,
            wal_path,
            fsync: cfg.fsync,
            rotate_size: cfg.rotate_size.0 as u64,
            files: Mutex::new(Files {
                log,
                log_len,
                wal,
                wal_len: 0,
                open: HashMap::new(),
            }),
        });
        if cfg.fsync == Fsync::Interval {
            let weak = Arc::downgrade(&me);
            std::thread::Builder::new()
                .name("usage-fsync".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let Some(log) = weak.upgrade() else { return };
                    log.sync();
                })
                .map_err(|e| format!("usage log: {e}"))?;
        }
        Ok((me, records))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync(&self) {
        let handles = {
            let f = self.lock();
            (f.log.try_clone(), f.wal.try_clone())
        };
        if let (Ok(log), Ok(wal)) = handles {
            let _ = log.sync_data();
            let _ = wal.sync_data();
        }
    }

    /// Notes a request about to go upstream, charged at its reservation
    /// should its end never be recorded.
    pub fn begin(&self, provisional: &UsageRecord) -> Result<(), String> {
        let mut buf = Vec::with_capacity(512);
        line(&mut buf, provisional);
        let mut f = self.lock();
        f.wal
            .write_all(&buf)
            .map_err(|e| io("cannot write", &self.wal_path, e))?;
        if self.fsync == Fsync::Always {
            f.wal
                .sync_data()
                .map_err(|e| io("cannot sync", &self.wal_path, e))?;
        }
        f.wal_len += buf.len() as u64;
        f.open.insert(provisional.request_id.clone(), buf);
        Ok(())
    }

    /// Appends a request's final record.
    pub fn end(&self, record: &UsageRecord) -> Result<(), String> {
        let mut buf = Vec::with_capacity(512);
        line(&mut buf, record);
        let mut f = self.lock();
        if f.log_len + buf.len() as u64 > self.rotate_size && f.log_len > 0 {
            self.rotate(&mut f)?;
        }
        f.log
            .write_all(&buf)
            .map_err(|e| io("cannot write", &self.path, e))?;
        f.log_len += buf.len() as u64;
        f.open.remove(&record.request_id);
        if f.open.is_empty() && f.wal_len > 0 {
            // Nothing in flight: everything in the write-ahead file is settled.
            if f.wal.set_len(0).is_ok() {
                f.wal_len = 0;
            }
        } else if f.wal_len > WAL_COMPACT {
            self.compact(&mut f)?;
        }
        Ok(())
    }

    fn rotate(&self, f: &mut Files) -> Result<(), String> {
        let _ = f.log.sync_data();
        let stamp = crate::govern::limits::now_nanos();
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{stamp}"));
        std::fs::rename(&self.path, &name).map_err(|e| io("cannot rotate", &self.path, e))?;
        f.log = append(&self.path)?;
        f.log_len = 0;
        Ok(())
    }

    fn compact(&self, f: &mut Files) -> Result<(), String> {
        let tmp = self.wal_path.with_extension("wal.tmp");
        let mut out = File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
        let mut len = 0;
        for l in f.open.values() {
            out.write_all(l).map_err(|e| io("cannot write", &tmp, e))?;
            len += l.len() as u64;
        }
        out.sync_data().map_err(|e| io("cannot sync", &tmp, e))?;
        std::fs::rename(&tmp, &self.wal_path).map_err(|e| io("cannot rename", &tmp, e))?;
        f.wal = OpenOptions::new()
            .append(true)
            .open(&self.wal_path)
            .map_err(|e| io("cannot open", &self.wal_path, e))?;
        f.wal_len = len;
        Ok(())
    }

    /// Every record on disk, oldest first (for `/admin/usage`).
    pub fn records(&self) -> Result<Vec<UsageRecord>, String> {
        read_all(&self.path)
    }
}

fn line(buf: &mut Vec<u8>, r: &UsageRecord) {
    if serde_json::to_writer(&mut *buf, r).is_ok() {
        buf.push(b'\n');
    }
}

/// Records of the rotated files (oldest first), then of the live one.
fn read_all(path: &Path) -> Result<Vec<UsageRecord>, String> {
    let mut files = Vec::new();
    let (dir, stem) = (
        path.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stamp) = name
                .strip_prefix(&stem)
                .and_then(|r| r.strip_prefix('.'))
                .and_then(|r| r.parse::<u64>().ok())
            {
                files.push((stamp, e.path()));
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for (_, p) in files {
        out.extend(read_lines(&p)?);
    }
    out.extend(read_lines(path)?);
    Ok(out)
}

/// Parses a JSONL file; a torn last line (a crash mid-write) is skipped.
fn read_lines(path: &Path) -> Result<Vec<UsageRecord>, String> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("cannot read", path, e)),
    };
    let mut out = Vec::new();
    for l in BufReader::new(f).lines() {
        let l = l.map_err(|e| io("cannot read", path, e))?;
        match serde_json::from_str::<UsageRecord>(&l) {
            Ok(r) => out.push(r),
            Err(_) if l.trim().is_empty() => {}
            Err(e) => tracing::warn!("usage log {}: skipped a bad line: {e}", path.display()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::Size;

    fn rec(id: &str, cost: u64) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            cost_nano_usd: cost,
            ..UsageRecord::default()
        }
    }

    fn cfg(dir: &Path, rotate: usize) -> UsageLogSection {
        UsageLogSection {
            path: dir.join("usage.jsonl").display().to_string(),
            fsync: Fsync::Never,
            rotate_size: Size(rotate),
        }
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-usage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn unfinished_requests_are_replayed_once() {
        let d = tmpdir("replay");
        {
            let (log, old) = UsageLog::open(&cfg(&d, 1 << 20)).unwrap();
            assert!(old.is_empty());
            log.begin(&rec("a", 5)).unwrap();
            log.begin(&rec("b", 7)).unwrap();
            log.end(&rec("a", 3)).unwrap();
            // "b" never ends: the process dies here.
        }
        let (_, records) = UsageLog::open(&cfg(&d, 1 << 20)).unwrap();
        let ids: Vec<_> = records
            .iter()
            .map(|r| (r.request_id.as_str(), r.cost_nano_usd, r.replayed))
            .collect();
        assert_eq!(ids, vec![("a", 3, false), ("b", 7, true)]);
        // A second restart replays nothing more.
        let (_, again) = UsageLog::open(&cfg(&d, 1 << 20)).unwrap();
        assert_eq!(again.len(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rotated_files_are_read_back_in_order() {
        let d = tmpdir("rotate");
        let (log, _) = UsageLog::open(&cfg(&d, 300)).unwrap();
        for i in 0..20 {
            let id = format!("r{i}");
            log.begin(&rec(&id, i)).unwrap();
            log.end(&rec(&id, i)).unwrap();
        }
        let files = std::fs::read_dir(&d).unwrap().count();
        assert!(files > 3, "{files} files");
        let all = log.records().unwrap();
        let costs: Vec<u64> = all.iter().map(|r| r.cost_nano_usd).collect();
        assert_eq!(costs, (0..20).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&d);
    }
}
