//! `store: redis`: several instances share keys, limits and spend.
//!
//! Limits are leased, not checked per request: an instance takes a slice
//! (`lease` × the limit) of a window's requests, tokens or a budget from
//! Redis with one atomic script, admits locally until the slice is used, then
//! takes another. The script never grants past the limit, so the instances
//! together never admit more than it; what one instance leased and did not
//! use is lost to the others until the window ends, at most
//! (instances − 1) × lease per window. `exact: true` leases exactly what each
//! request needs (one round trip per request). Settlements (tokens used past
//! a reservation, spend) are batched to Redis every 50 ms.
//!
//! When Redis is unreachable: `fail: open` admits on local limits alone and
//! keeps what it counted for Redis's return; `fail: closed` refuses (503).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use tokio::sync::mpsc;

use super::budget::Budget;
use super::directory::{Overlay, ScopeState};
use super::limits::{DAY, MINUTE};
use crate::config::schema::{FailMode, Period};

/// Takes up to ARGV[1] of what is left under the limit ARGV[2]; answers
/// {granted, total after}.
const LEASE: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - cur)
if grant <= 0 then return {0, cur} end
local total = redis.call('INCRBY', KEYS[1], grant)
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {grant, total}
";

/// Applies a batch of counter deltas once: KEYS[1] marks the batch (kept
/// ARGV[1] ms); KEYS[i+1] gets ARGV[2i] added and ARGV[2i+1] ms to live.
/// Answers the new totals, or nil when the batch was applied before.
const APPLY: &str = r"
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return nil end
local out = {}
for i = 2, #KEYS do
  out[i - 1] = redis.call('INCRBY', KEYS[i], ARGV[2 * i - 2])
  local ttl = tonumber(ARGV[2 * i - 1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return out
";

/// How long a batch's mark is kept: far longer than any retry takes.
const BATCH_MARK_MS: u64 = 3_600_000;

/// Replaces the overlay if its version is still ARGV[1]; answers the new
/// version, or -1 when someone else changed it first.
const SAVE_OVERLAY: &str = r"
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
return redis.call('INCR', KEYS[2])
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rpm,
    Tpm,
    Tpd,
}

/// What a request needs beyond what this instance holds.
pub enum Shortfall {
    Window {
        state: Arc<ScopeState>,
        kind: Kind,
        id: u64,
        need: u64,
        limit: u64,
    },
    Budget {
        state: Arc<ScopeState>,
        budget: Arc<Budget>,
        period: u32,
        need: u64,
    },
}

/// A settlement or an outage count on its way to Redis.
pub struct Delta {
    pub key: String,
    pub n: i64,
    pub ttl_ms: u64,
    /// For spend: the budget whose thresholds its total may cross, with
    /// the scope (`key`, `tenant`), its id and the period.
    pub alert: Option<(Arc<Budget>, &'static str, String, u32)>,
}

pub struct Shared {
    client: redis::Client,
    conn: ArcSwapOption<MultiplexedConnection>,
    pub fail: FailMode,
    lease: f64,
    exact: bool,
    prefix: String,
    up: AtomicBool,
    tx: mpsc::UnboundedSender<Delta>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Delta>>>,
    usage_tx: Option<mpsc::UnboundedSender<String>>,
    usage_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    pub overlay_version: AtomicI64,
    lease_script: Script,
    save_script: Script,
    apply_script: Script,
    pub up_gauge: prometheus::IntGauge,
    pub errors: prometheus::IntCounter,
}

/// Usage records held for the stream while the store is away.
const MAX_HELD_RECORDS: usize = 100_000;

pub fn ttl_of(period: Period) -> u64 {
    match period {
        Period::Daily => 3 * DAY / 1_000_000,
        Period::Monthly => 63 * DAY / 1_000_000,
        Period::Total => 0,
    }
}

impl Shared {
    pub fn new(
        url: &str,
        fail: FailMode,
        lease: f64,
        exact: bool,
        usage_stream: bool,
        registry: &prometheus::Registry,
    ) -> Result<Shared, String> {
        let client = redis::Client::open(url).map_err(|e| format!("store.url: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (utx, urx) = mpsc::unbounded_channel();
        let up_gauge = prometheus::IntGauge::new(
            "sluice_store_up",
            "1 while the shared store (Redis) answers, 0 while it does not",
        )
        .map_err(|e| e.to_string())?;
        let errors = prometheus::IntCounter::new(
            "sluice_store_errors_total",
            "Calls to the shared store that failed",
        )
        .map_err(|e| e.to_string())?;
        let _ = registry.register(Box::new(up_gauge.clone()));
        let _ = registry.register(Box::new(errors.clone()));
        Ok(Shared {
            client,
            conn: ArcSwapOption::empty(),
            fail,
            lease: lease.clamp(0.0, 1.0),
            exact,
            prefix: "sluice:".into(),
            up: AtomicBool::new(false),
            tx,
            rx: Mutex::new(Some(rx)),
            usage_tx: usage_stream.then_some(utx),
            usage_rx: Mutex::new(Some(urx)),
            overlay_version: AtomicI64::new(-1),
            lease_script: Script::new(LEASE),
            save_script: Script::new(SAVE_OVERLAY),
            apply_script: Script::new(APPLY),
            up_gauge,
            errors,
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn down(&self, why: &str) {
        self.errors.inc();
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::error!("shared store unreachable: {why}");
        }
        self.up_gauge.set(0);
        self.conn.store(None);
    }

    /// Drops the connection (made on a runtime that is going away).
    pub fn disconnect(&self) {
        self.conn.store(None);
        self.up.store(false, Ordering::Release);
    }

    fn conn(&self) -> Result<MultiplexedConnection, String> {
        self.conn
            .load_full()
            .map(|c| (*c).clone())
            .ok_or_else(|| "not connected".to_string())
    }

    /// Connects (or checks the connection); true when the store answers.
    pub async fn connect(&self) -> bool {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(Duration::from_millis(500));
        let c = match self.conn() {
            Ok(c) => c,
            Err(_) => match self
                .client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    self.down(&e.to_string());
                    return false;
                }
            },
        };
        let mut probe = c.clone();
        match redis::cmd("PING").query_async::<String>(&mut probe).await {
            Ok(_) => {
                self.conn.store(Some(Arc::new(c)));
                if !self.up.swap(true, Ordering::AcqRel) {
                    tracing::info!("shared store reachable");
                }
                self.up_gauge.set(1);
                true
            }
            Err(e) => {
                self.down(&e.to_string());
                false
            }
        }
    }

    fn window_key(&self, state: &ScopeState, kind: Kind, id: u64) -> (String, u64) {
        let (k, len) = match kind {
            Kind::Rpm => ("rpm", MINUTE),
            Kind::Tpm => ("tpm", MINUTE),
            Kind::Tpd => ("tpd", DAY),
        };
        (
            format!("{}w:{}:{k}:{id}", self.prefix, state.name),
            (len + MINUTE) / 1_000_000,
        )
    }

    pub fn committed_key(&self, state: &ScopeState, period: u32) -> String {
        format!("{}c:{}:{period}", self.prefix, state.name)
    }

    pub fn spent_key(&self, state: &ScopeState, period: u32) -> String {
        format!("{}s:{}:{period}", self.prefix, state.name)
    }

    /// Leases what the shortfalls need (at least a lease's worth each).
    pub async fn top_up(&self, short: &[Shortfall]) -> Result<(), String> {
        let mut c = self.conn()?;
        for s in short {
            let (key, need, limit, ttl) = match s {
                Shortfall::Window {
                    state,
                    kind,
                    id,
                    need,
                    limit,
                } => {
                    let (k, ttl) = self.window_key(state, *kind, *id);
                    (k, *need, *limit, ttl)
                }
                Shortfall::Budget {
                    state,
                    budget,
                    period,
                    need,
                } => (
                    self.committed_key(state, *period),
                    *need,
                    budget.limit,
                    ttl_of(budget.period),
                ),
            };
            let want = if self.exact {
                need
            } else {
                need.max((limit as f64 * self.lease).ceil() as u64)
            };
            let r: Result<(u64, u64), _> = self
                .lease_script
                .key(&key)
                .arg(want)
                .arg(limit)
                .arg(ttl)
                .invoke_async(&mut c)
                .await;
            let (granted, total) = r.map_err(|e| {
                self.down(&e.to_string());
                e.to_string()
            })?;
            match s {
                Shortfall::Window {
                    state, kind, id, ..
                } => {
                    let l = &state.leased;
                    match kind {
                        Kind::Rpm => {
                            l.rpm.add(*id, granted);
                            l.rpm_seen.set(*id, total);
                        }
                        Kind::Tpm => {
                            l.tpm.add(*id, granted);
                            l.tpm_seen.set(*id, total);
                        }
                        Kind::Tpd => l.tpd.add(*id, granted),
                    }
                }
                Shortfall::Budget { state, period, .. } => state.spend.add_lease(*period, granted),
            }
        }
        Ok(())
    }

    /// Queues a settlement for the next batch.
    pub fn push(&self, d: Delta) {
        let _ = self.tx.send(d);
    }

    /// A count made while the store was away (or past a lease), for Redis.
    pub fn push_window(&self, state: &ScopeState, kind: Kind, id: u64, n: u64) {
        let (key, ttl_ms) = self.window_key(state, kind, id);
        self.push(Delta {
            key,
            n: n as i64,
            ttl_ms,
            alert: None,
        });
    }

    /// Sends queued settlements every 50 ms, keeping them while the store is
    /// away; calls `crossed` with each spend total that has an alert budget.
    pub async fn flush_loop(&self, fire: impl Fn(&'static str, String, &Budget, f64, u64)) {
        let (Some(mut rx), Some(mut urx)) = (
            self.rx.lock().unwrap_or_else(|p| p.into_inner()).take(),
            self.usage_rx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        ) else {
            return;
        };
        let mut pending: HashMap<String, Delta> = HashMap::new();
        let mut records: Vec<String> = Vec::new();
        // A batch that failed is retried as it was, under the same id, so a
        // batch Redis applied before the answer was lost is not applied twice.
        let mut batch: Option<(String, Vec<Delta>)> = None;
        let mut next_id = 0u64;
        let instance = super::directory::hex(&super::directory::sha256(&format!(
            "{:?}{}",
            std::time::SystemTime::now(),
            std::process::id()
        )))[..16]
            .to_string();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            while let Ok(d) = rx.try_recv() {
                match pending.get_mut(&d.key) {
                    Some(p) => p.n += d.n,
                    None => {
                        pending.insert(d.key.clone(), d);
                    }
                }
            }
            while let Ok(r) = urx.try_recv() {
                records.push(r);
            }
            if records.len() > MAX_HELD_RECORDS {
                // The log file has them all; the stream is a best-effort copy.
                let drop = records.len() - MAX_HELD_RECORDS;
                records.drain(..drop);
            }
            if !self.is_up() {
                continue;
            }
            let Ok(mut c) = self.conn() else { continue };
            if batch.is_none() && !pending.is_empty() {
                next_id += 1;
                let id = format!("{}b:{instance}:{next_id}", self.prefix);
                batch = Some((id, pending.drain().map(|(_, d)| d).collect()));
            }
            if let Some((id, deltas)) = &batch {
                let mut inv = self.apply_script.key(id);
                inv.arg(BATCH_MARK_MS);
                for d in deltas {
                    inv.key(&d.key).arg(d.n).arg(d.ttl_ms);
                }
                match inv.invoke_async::<Option<Vec<i64>>>(&mut c).await {
                    Ok(totals) => {
                        // `None`: an earlier try was applied; totals unknown.
                        for (d, total) in deltas.iter().zip(totals.unwrap_or_default()) {
                            self.check_alerts(d, total, &fire).await;
                        }
                        batch = None;
                    }
                    // Kept for the store's return: the counts reconcile then.
                    Err(e) => {
                        self.down(&e.to_string());
                        continue;
                    }
                }
            }
            if !records.is_empty() {
                // At least once: a timed-out append may be repeated (records
                // carry their request id).
                let mut pipe = redis::pipe();
                for chunk in records.chunks(1000) {
                    pipe.clear();
                    for r in chunk {
                        pipe.cmd("XADD")
                            .arg(format!("{}usage", self.prefix))
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(1_000_000)
                            .arg("*")
                            .arg("record")
                            .arg(r)
                            .ignore();
                    }
                    if let Err(e) = pipe.query_async::<()>(&mut c).await {
                        self.down(&e.to_string());
                        break;
                    }
                }
                if self.is_up() {
                    records.clear();
                }
            }
        }
    }

    /// Alerts for each threshold a settled total crossed; one instance
    /// wins each threshold's flag, so it fires once.
    async fn check_alerts(
        &self,
        d: &Delta,
        total: i64,
        fire: &impl Fn(&'static str, String, &Budget, f64, u64),
    ) {
        let Some((b, scope, id, period)) = &d.alert else {
            return;
        };
        let (after, before) = (total.max(0) as u64, (total - d.n).max(0) as u64);
        for (i, (at, fraction)) in b.alerts.iter().enumerate() {
            if before < *at && after >= *at {
                let flag = format!("{}a:{scope}:{id}:{period}:{i}", self.prefix);
                if self.claim_alert(&flag, ttl_of(b.period)).await {
                    fire(scope, id.clone(), b, *fraction, after);
                }
            }
        }
    }

    /// Whether this instance is the one to send the alert for `flag`.
    pub async fn claim_alert(&self, flag: &str, ttl_ms: u64) -> bool {
        let Ok(mut c) = self.conn() else { return false };
        let mut cmd = redis::cmd("SET");
        cmd.arg(flag).arg(1).arg("NX");
        if ttl_ms > 0 {
            cmd.arg("PX").arg(ttl_ms);
        }
        matches!(cmd.query_async::<Option<String>>(&mut c).await, Ok(Some(_)))
    }

    /// A spend total from the store.
    pub async fn get(&self, key: &str) -> Option<u64> {
        let mut c = self.conn().ok()?;
        redis::cmd("GET")
            .arg(key)
            .query_async::<Option<u64>>(&mut c)
            .await
            .ok()
            .flatten()
    }

    /// The overlay and its version, when it changed since the last load.
    pub async fn load_overlay(&self) -> Result<Option<(i64, Overlay)>, String> {
        let mut c = self.conn()?;
        let (v, data): (Option<i64>, Option<String>) = redis::pipe()
            .get(format!("{}ov:v", self.prefix))
            .get(format!("{}ov", self.prefix))
            .query_async(&mut c)
            .await
            .map_err(|e| {
                self.down(&e.to_string());
                e.to_string()
            })?;
        let v = v.unwrap_or(0);
        if v == self.overlay_version.load(Ordering::Acquire) {
            return Ok(None);
        }
        let overlay = match data {
            Some(d) => serde_json::from_str(&d).map_err(|e| format!("stored overlay: {e}"))?,
            None => Overlay::default(),
        };
        Ok(Some((v, overlay)))
    }

    /// Stores `overlay` if nobody changed it since `version`; the new version.
    pub async fn save_overlay(&self, version: i64, overlay: &Overlay) -> Result<i64, String> {
        let mut c = self.conn()?;
        let data = serde_json::to_string(overlay).map_err(|e| e.to_string())?;
        let v: i64 = self
            .save_script
            .key(format!("{}ov", self.prefix))
            .key(format!("{}ov:v", self.prefix))
            .arg(version.max(0))
            .arg(data)
            .invoke_async(&mut c)
            .await
            .map_err(|e| {
                self.down(&e.to_string());
                e.to_string()
            })?;
        if v < 0 {
            return Err("changed concurrently on another instance; retry".into());
        }
        self.overlay_version.store(v, Ordering::Release);
        Ok(v)
    }

    /// Queues a usage record for the `sluice:usage` stream, if exported.
    pub fn push_usage(&self, json: impl FnOnce() -> String) {
        if let Some(tx) = &self.usage_tx {
            let _ = tx.send(json());
        }
    }
}
