//! Usage records: one JSON line per request in an append-only, rotated file.
//!
//! Durability: a request's provisional record (usage = the reservation) is
//! noted in a write-ahead file before any of its answer goes out (with
//! `fsync: always`, before it goes upstream); when it ends, the final record
//! goes to the log. A restart replays every provisional record that has no
//! final one, so a response that completed is never missing from the log,
//! and never twice in it.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::wal::Segment;
use crate::config::schema::{Fsync, UsageLogSection};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
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
    #[serde(default)]
    pub replayed: bool,
}

/// A record as it is written: borrowed from the request, so noting and
/// recording one allocates nothing. `UsageRecord` is a record read back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Entry<'a> {
    pub ts_ms: u64,
    pub request_id: &'a str,
    pub tenant: Option<&'a str>,
    /// A key id, or with `jwt` a JWT subject, written as `jwt:<subject>`
    /// so it can never be taken for a key id (those have no ':').
    pub key_id: Option<&'a str>,
    pub jwt: bool,
    pub model: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub target: Option<&'a str>,
    pub status: u16,
    pub stream: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_nano_usd: u64,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub upstream_ms: Option<f64>,
    pub replayed: bool,
}

impl Entry<'_> {
    /// The record as one JSON object (for the Redis usage stream).
    pub fn json(&self) -> String {
        super::usage_json::to_string(self)
    }
}

impl UsageRecord {
    pub fn entry(&self) -> Entry<'_> {
        Entry {
            ts_ms: self.ts_ms,
            request_id: &self.request_id,
            tenant: self.tenant.as_deref(),
            key_id: self.key_id.as_deref(),
            jwt: false,
            model: self.model.as_deref(),
            provider: self.provider.as_deref(),
            target: self.target.as_deref(),
            status: self.status,
            stream: self.stream,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self.cached_tokens,
            cost_nano_usd: self.cost_nano_usd,
            latency_ms: self.latency_ms,
            ttfb_ms: self.ttfb_ms,
            upstream_ms: self.upstream_ms,
            replayed: self.replayed,
        }
    }
}

struct Files {
    log: File,
    log_len: u64,
    /// The write-ahead file being appended to, and its generation.
    wal: Segment,
    wal_gen: u64,
    /// Requests still running, by write-ahead generation. A generation's
    /// file is deleted once it is no longer written and none are open.
    open: BTreeMap<u64, u64>,
    /// Reused for every line: no allocation per record.
    buf: Vec<u8>,
    /// Notes not yet written (unless `fsync: always`): one write covers
    /// every request noted since the last answer went out.
    notes: Vec<u8>,
    /// The last write of notes failed: new requests are refused until one
    /// succeeds.
    notes_failed: bool,
    /// Final records not yet written, and the generations of their notes:
    /// a note may go only once its final record is in the log.
    pending: Vec<u8>,
    pending_gens: Vec<u64>,
    /// The next write-ahead file, made ahead by the flush thread under a
    /// name readers skip: a request that fills the current one then waits
    /// for a rename, not for megabytes of zeros.
    spare: Option<Segment>,
}

pub struct UsageLog {
    path: PathBuf,
    fsync: Fsync,
    rotate_size: u64,
    files: Mutex<Files>,
    /// `Files::notes` holds something: lets `commit` skip the lock.
    waiting: AtomicBool,
    /// The flush thread stops (tests use it to stand for a crash).
    halted: AtomicBool,
}

/// A new write-ahead generation starts once the current one holds this
/// much; its file is made a little larger, for the notes waiting then.
const WAL_ROTATE: usize = 4 << 20;
const WAL_SIZE: usize = WAL_ROTATE + (256 << 10);

/// Final records are written in batches: every `FLUSH_EVERY`, or once this
/// much is waiting. Until then their write-ahead notes stand in for them.
const FLUSH_AT: usize = 256 << 10;
const FLUSH_EVERY: Duration = Duration::from_millis(20);

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

/// A new write-ahead file of generation `gen`, mapped.
fn segment(path: &Path, gen: u64) -> Result<Segment, String> {
    let wal = wal_path(path, gen);
    Segment::create(&wal, WAL_SIZE).map_err(|e| io("cannot create", &wal, e))
}

/// `usage.jsonl` → `usage.jsonl.wal-spare`: not a generation, so never
/// read back.
fn spare_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".wal-spare");
    PathBuf::from(name)
}

/// `usage.jsonl` → `usage.jsonl.wal.<gen>`.
fn wal_path(path: &Path, gen: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".wal.{gen}"));
    PathBuf::from(name)
}

/// The write-ahead files beside `path`, by generation.
fn wal_files(path: &Path) -> Vec<(u64, PathBuf)> {
    let (dir, stem) = dir_and_stem(path);
    let prefix = format!("{stem}.wal.");
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let gen = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((gen, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn dir_and_stem(path: &Path) -> (&Path, String) {
    (
        path.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

impl UsageLog {
    /// Opens the log, replays the write-ahead files, and returns every
    /// record on disk (rotated files included) so spend can be rebuilt.
    pub fn open(cfg: &UsageLogSection) -> Result<(Arc<UsageLog>, Vec<UsageRecord>), String> {
        let path = PathBuf::from(&cfg.path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        }
        let mut records = read_all(&path)?;
        let wals = wal_files(&path);
        let mut pending = Vec::new();
        for (_, p) in &wals {
            pending.extend(read_lines(p)?);
        }
        let mut log = append(&path)?;
        if !pending.is_empty() {
            let mut seen: HashSet<String> = records.iter().map(|r| r.request_id.clone()).collect();
            let replay: Vec<UsageRecord> = pending
                .into_iter()
                .filter(|r| seen.insert(r.request_id.clone()))
                .map(|r| UsageRecord {
                    replayed: true,
                    ..r
                })
                .collect();
            let mut buf = Vec::new();
            for r in &replay {
                line(&mut buf, &r.entry());
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
        // Replayed (and synced): the old write-ahead files are done with.
        for (_, p) in &wals {
            std::fs::remove_file(p).map_err(|e| io("cannot remove", p, e))?;
        }
        // A spare left by the last run holds nothing: made anew when needed.
        let _ = std::fs::remove_file(spare_path(&path));
        let wal_gen = wals.last().map_or(0, |(g, _)| g + 1);
        let wal = segment(&path, wal_gen)?;
        let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
        let me = Arc::new(UsageLog {
            path,
            fsync: cfg.fsync,
            rotate_size: cfg.rotate_size.0 as u64,
            files: Mutex::new(Files {
                log,
                log_len,
                wal,
                wal_gen,
                open: BTreeMap::new(),
                buf: Vec::with_capacity(1024),
                notes: Vec::with_capacity(64 << 10),
                notes_failed: false,
                pending: Vec::with_capacity(FLUSH_AT + 4096),
                pending_gens: Vec::new(),
                spare: None,
            }),
            waiting: AtomicBool::new(false),
            halted: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&me);
        let fsync = cfg.fsync;
        std::thread::Builder::new()
            .name("usage-flush".into())
            .spawn(move || {
                let mut since_sync = Duration::ZERO;
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    let Some(log) = weak.upgrade() else { return };
                    if log.halted.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = log.flush() {
                        tracing::error!("{e}");
                    }
                    log.make_spare();
                    since_sync += FLUSH_EVERY;
                    if fsync == Fsync::Interval && since_sync >= Duration::from_secs(1) {
                        since_sync = Duration::ZERO;
                        log.sync();
                    }
                }
            })
            .map_err(|e| format!("usage log: {e}"))?;
        Ok((me, records))
    }

    /// Stops the flush thread: what it has not written stays unwritten,
    /// as after a crash.
    #[cfg(test)]
    fn halt(&self) {
        self.halted.store(true, Ordering::Relaxed);
        // One period: a flush under way when the flag was set has ended.
        std::thread::sleep(FLUSH_EVERY * 2);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync(&self) {
        let handles = {
            let f = self.lock();
            (f.log.try_clone(), f.wal.handle())
        };
        if let (Ok(log), Ok(wal)) = handles {
            let _ = log.sync_data();
            let _ = wal.sync_data();
        }
    }

    /// Notes a request about to go upstream, charged at its reservation
    /// should its end never be recorded. Answers the write-ahead
    /// generation to hand back to `end`. Unless `fsync: always`, the note
    /// is written by `commit`, before the request's answer goes out.
    pub fn begin(&self, provisional: &Entry) -> Result<u64, String> {
        let mut guard = self.lock();
        let f = &mut *guard;
        if f.notes_failed {
            // Retried here so a disk that recovered is noticed.
            self.write_notes(f)?;
        }
        if f.wal.len() + f.notes.len() > WAL_ROTATE {
            self.write_notes(f)?;
            self.next_wal(f)?;
        }
        let gen = f.wal_gen;
        if self.fsync == Fsync::Always {
            f.buf.clear();
            line(&mut f.buf, provisional);
            let wal = wal_path(&self.path, gen);
            let from = f.wal.len();
            f.wal
                .append(&f.buf)
                .map_err(|e| io("cannot write", &wal, e))?;
            f.wal
                .sync_from(from)
                .map_err(|e| io("cannot sync", &wal, e))?;
        } else {
            line(&mut f.notes, provisional);
            self.waiting.store(true, Ordering::Release);
        }
        *f.open.entry(gen).or_default() += 1;
        Ok(gen)
    }

    /// Writes the notes waiting in memory. Called before a noted request's
    /// answer goes out: a response that completes is then covered by its
    /// note or by its record even if the process dies at once.
    pub fn commit(&self) -> Result<(), String> {
        // A note this request made is seen here: the lock that stored it
        // ordered the flag before this task went on.
        if !self.waiting.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut guard = self.lock();
        self.write_notes(&mut guard)
    }

    fn write_notes(&self, f: &mut Files) -> Result<(), String> {
        if f.notes.is_empty() {
            return Ok(());
        }
        // A copy into the mapped file: no system call (see `wal`). It fails
        // only when the file cannot grow; nothing is written then, and the
        // notes are retried whole.
        if let Err(e) = f.wal.append(&f.notes) {
            f.notes_failed = true;
            return Err(io("cannot write", &wal_path(&self.path, f.wal_gen), e));
        }
        f.notes_failed = false;
        f.notes.clear();
        self.waiting.store(false, Ordering::Release);
        Ok(())
    }

    /// Appends a request's final record; `gen` is what `begin` answered.
    ///
    /// A request noted in the write-ahead file has its record batched (the
    /// note covers it until the batch is written); one that was not (refused
    /// before admission) is written at once.
    pub fn end(&self, record: &Entry, gen: Option<u64>) -> Result<(), String> {
        let mut guard = self.lock();
        let f = &mut *guard;
        line(&mut f.pending, record);
        if let Some(g) = gen {
            f.pending_gens.push(g);
        }
        if gen.is_none() || f.pending.len() >= FLUSH_AT {
            // On failure the batch stays whole (the records and the notes
            // they release, together) for the next flush.
            self.write_pending(f)?;
        }
        Ok(())
    }

    /// Writes the waiting notes and the batched records; releases the
    /// notes the records cover.
    pub fn flush(&self) -> Result<(), String> {
        let mut guard = self.lock();
        let notes = self.write_notes(&mut guard);
        self.write_pending(&mut guard)?;
        notes
    }

    fn write_pending(&self, f: &mut Files) -> Result<(), String> {
        if f.pending.is_empty() {
            return Ok(());
        }
        if f.log_len + f.pending.len() as u64 > self.rotate_size && f.log_len > 0 {
            self.rotate(f)?;
        }
        if let Err(e) = f.log.write_all(&f.pending) {
            // Retried whole, after a newline that ends a torn first part
            // (read back, a blank line is skipped).
            if f.pending.first() != Some(&b'\n') {
                f.pending.insert(0, b'\n');
            }
            return Err(io("cannot write", &self.path, e));
        }
        if self.fsync == Fsync::Always {
            // The notes go next: the records they stand for must be on disk.
            f.log
                .sync_data()
                .map_err(|e| io("cannot sync", &self.path, e))?;
        }
        f.log_len += f.pending.len() as u64;
        f.pending.clear();
        let current = f.wal_gen;
        for g in std::mem::take(&mut f.pending_gens) {
            let left = f.open.get_mut(&g).map(|n| {
                *n = n.saturating_sub(1);
                *n
            });
            if left == Some(0) {
                f.open.remove(&g);
                if g != current {
                    // Every request it noted is in the log: it is not needed.
                    let _ = std::fs::remove_file(wal_path(&self.path, g));
                }
            }
        }
        Ok(())
    }

    /// Makes the spare write-ahead file once the current one is half full.
    /// Outside the lock: only this thread makes spares, and a spare is
    /// named apart until it is taken.
    fn make_spare(&self) {
        {
            let f = self.lock();
            if f.spare.is_some() || f.wal.len() < WAL_ROTATE / 2 {
                return;
            }
        }
        let path = spare_path(&self.path);
        match Segment::create(&path, WAL_SIZE) {
            Ok(s) => self.lock().spare = Some(s),
            Err(e) => tracing::warn!("{}", io("cannot create", &path, e)),
        }
    }

    /// Starts the next write-ahead generation; the current one is deleted
    /// now if nothing in it is open, else when its last request ends.
    fn next_wal(&self, f: &mut Files) -> Result<(), String> {
        let next = f.wal_gen + 1;
        let wal = wal_path(&self.path, next);
        f.wal = match f.spare.take() {
            Some(spare) => match std::fs::rename(spare_path(&self.path), &wal) {
                Ok(()) => spare,
                Err(_) => segment(&self.path, next)?,
            },
            None => segment(&self.path, next)?,
        };
        if !f.open.contains_key(&f.wal_gen) {
            let _ = std::fs::remove_file(wal_path(&self.path, f.wal_gen));
        }
        f.wal_gen = next;
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

    /// Every record, oldest first (for `/admin/usage`).
    pub fn records(&self) -> Result<Vec<UsageRecord>, String> {
        self.flush()?;
        read_all(&self.path)
    }
}

fn line(buf: &mut Vec<u8>, r: &Entry) {
    super::usage_json::write(buf, r);
    buf.push(b'\n');
}

/// Records of the rotated files (oldest first), then of the live one.
fn read_all(path: &Path) -> Result<Vec<UsageRecord>, String> {
    let mut files = Vec::new();
    let (dir, stem) = dir_and_stem(path);
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

/// Parses a JSONL file; a torn last line (a crash mid-write) is skipped,
/// and so is a write-ahead file's zero padding.
fn read_lines(path: &Path) -> Result<Vec<UsageRecord>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("cannot read", path, e)),
    };
    let mut out = Vec::new();
    for l in super::wal::written(&bytes).split(|b| *b == b'\n') {
        match serde_json::from_slice::<UsageRecord>(l) {
            Ok(r) => out.push(r),
            Err(_) if l.trim_ascii().is_empty() => {}
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

    /// The records a restart reads back: id, cost, replayed.
    fn reopened(d: &Path) -> Vec<(String, u64, bool)> {
        let (_, records) = UsageLog::open(&cfg(d, 1 << 20)).unwrap();
        records
            .into_iter()
            .map(|r| (r.request_id, r.cost_nano_usd, r.replayed))
            .collect()
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
            log.halt();
            let g = log.begin(&rec("a", 5).entry()).unwrap();
            log.begin(&rec("b", 7).entry()).unwrap();
            let gc = log.begin(&rec("c", 9).entry()).unwrap();
            log.end(&rec("a", 3).entry(), Some(g)).unwrap();
            log.flush().unwrap();
            // "c" ends but its record is still batched, "b" never ends:
            // the process dies here.
            log.end(&rec("c", 4).entry(), Some(gc)).unwrap();
            std::mem::forget(log);
        }
        assert_eq!(
            reopened(&d),
            vec![
                ("a".into(), 3, false),
                ("b".into(), 7, true),
                ("c".into(), 9, true)
            ]
        );
        // A second restart replays nothing more.
        let (_, again) = UsageLog::open(&cfg(&d, 1 << 20)).unwrap();
        assert_eq!(again.len(), 3);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_committed_note_is_replayed() {
        let d = tmpdir("commit");
        {
            let (log, _) = UsageLog::open(&cfg(&d, 1 << 20)).unwrap();
            log.halt();
            log.begin(&rec("answered", 5).entry()).unwrap();
            // Its answer goes out; the process dies before its end.
            log.commit().unwrap();
            log.begin(&rec("unanswered", 7).entry()).unwrap();
            std::mem::forget(log);
        }
        // The note of a request that was never answered was never written.
        assert_eq!(reopened(&d), vec![("answered".into(), 5, true)]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rotated_files_are_read_back_in_order() {
        let d = tmpdir("rotate");
        let (log, _) = UsageLog::open(&cfg(&d, 300)).unwrap();
        for i in 0..20 {
            let id = format!("r{i}");
            let g = log.begin(&rec(&id, i).entry()).unwrap();
            log.end(&rec(&id, i).entry(), Some(g)).unwrap();
            log.flush().unwrap();
        }
        let files = std::fs::read_dir(&d).unwrap().count();
        assert!(files > 3, "{files} files");
        let all = log.records().unwrap();
        let costs: Vec<u64> = all.iter().map(|r| r.cost_nano_usd).collect();
        assert_eq!(costs, (0..20).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn write_ahead_generations_go_once_their_requests_end() {
        let d = tmpdir("gens");
        let (log, _) = UsageLog::open(&cfg(&d, 1 << 30)).unwrap();
        let wals = || wal_files(&d.join("usage.jsonl")).len();
        let held = log.begin(&rec("held", 1).entry()).unwrap();
        let mut big = rec("x", 1);
        big.model = Some("m".repeat(4000));
        for i in 0..2000 {
            big.request_id = format!("r{i}");
            let g = log.begin(&big.entry()).unwrap();
            log.end(&big.entry(), Some(g)).unwrap();
        }
        log.flush().unwrap();
        // The first generation waits for "held"; the finished ones are gone.
        assert_eq!(wals(), 2, "{:?}", wal_files(&d.join("usage.jsonl")));
        log.end(&rec("held", 1).entry(), Some(held)).unwrap();
        log.flush().unwrap();
        assert_eq!(wals(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_spare_write_ahead_file_becomes_the_next_generation() {
        let d = tmpdir("spare");
        let path = d.join("usage.jsonl");
        {
            let (log, _) = UsageLog::open(&cfg(&d, 1 << 30)).unwrap();
            log.halt();
            let mut big = rec("x", 1);
            big.model = Some("m".repeat(4000));
            let mut i = 0;
            let mut note = |log: &UsageLog| {
                i += 1;
                big.request_id = format!("r{i}");
                log.begin(&big.entry()).unwrap()
            };
            log.make_spare();
            assert!(!spare_path(&path).exists(), "made before half full");
            while log.lock().wal.len() < WAL_ROTATE / 2 {
                note(&log);
                log.commit().unwrap();
            }
            log.make_spare();
            assert!(spare_path(&path).exists());
            // Never read back as a generation.
            assert_eq!(wal_files(&path).len(), 1);
            while log.lock().wal_gen == 0 {
                note(&log);
            }
            // Taken by the rotation, under the generation's name.
            assert!(!spare_path(&path).exists());
            assert!(log.lock().spare.is_none());
            log.begin(&rec("in-spare", 5).entry()).unwrap();
            log.commit().unwrap();
            std::mem::forget(log);
        }
        let back = reopened(&d);
        assert!(
            back.contains(&("in-spare".into(), 5, true)),
            "{}",
            back.len()
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
