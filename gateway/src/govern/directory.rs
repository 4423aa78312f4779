//! Tenants and virtual keys: definitions (config, then changes made through
//! the admin API) compiled into an immutable lookup table behind an
//! `ArcSwap`. Limiter and spend state lives apart, by id, so it survives a
//! rebuild.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::budget::{Budget, Spend};
use super::limits::{Gcra, Limits, Window};
use crate::config::schema::{BudgetSection, LimitsSection, TenantSection};
use crate::routing::rules::Glob;

/// Counters of one scope: a key, a tenant, a model or everything.
#[derive(Default)]
pub struct ScopeState {
    pub rps: Gcra,
    pub rpm: Window,
    pub tpm: Window,
    pub tpd: Window,
    pub spend: Spend,
    /// With a shared store: what this instance leased of each window.
    pub leased: Leased,
    /// Identifies the scope in the shared in-flight estimator.
    pub tag: u64,
    /// `k:<id>`, `t:<name>`, `m:<model>` or `g:`: its name in the store.
    pub name: String,
}

#[derive(Default)]
pub struct Leased {
    pub rpm: Window,
    pub tpm: Window,
    pub tpd: Window,
    /// The store's totals at the last lease, for `x-ratelimit-remaining-*`.
    pub rpm_seen: Window,
    pub tpm_seen: Window,
}

/// A key as stored: only the SHA-256 of the secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyDef {
    pub id: String,
    pub tenant: String,
    pub sha256: String,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub budget: Option<BudgetSection>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub created_ms: u64,
}

/// Everything the admin API changed, over the config's definitions.
/// `None` marks a deletion.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Overlay {
    #[serde(default)]
    pub keys: BTreeMap<String, Option<KeyDef>>,
    #[serde(default)]
    pub tenants: BTreeMap<String, Option<TenantSection>>,
}

pub struct Tenant {
    pub name: String,
    pub models: Option<Vec<Glob>>,
    pub endpoints: Option<Vec<Glob>>,
    pub limits: Limits,
    pub budget: Option<Arc<Budget>>,
    pub metadata: BTreeMap<String, String>,
    pub state: Arc<ScopeState>,
    pub def: TenantSection,
}

pub struct Key {
    pub id: String,
    pub tenant: Arc<Tenant>,
    pub models: Option<Vec<Glob>>,
    pub endpoints: Option<Vec<Glob>>,
    pub limits: Limits,
    pub budget: Option<Arc<Budget>>,
    pub metadata: BTreeMap<String, String>,
    pub disabled: bool,
    pub state: Arc<ScopeState>,
    pub def: KeyDef,
}

impl Key {
    /// Whether both the key's and its tenant's model lists allow `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        allows(&self.models, model) && allows(&self.tenant.models, model)
    }

    pub fn allows_endpoint(&self, path: &str) -> bool {
        allows(&self.endpoints, path) && allows(&self.tenant.endpoints, path)
    }

    /// A metadata label of the key, else of its tenant.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.metadata
            .get(name)
            .or_else(|| self.tenant.metadata.get(name))
            .map(String::as_str)
    }
}

fn allows(list: &Option<Vec<Glob>>, s: &str) -> bool {
    list.as_ref().is_none_or(|l| l.iter().any(|g| g.matches(s)))
}

fn globs(list: &Option<Vec<String>>) -> Result<Option<Vec<Glob>>, String> {
    list.as_ref()
        .map(|l| l.iter().map(|p| Glob::new(p)).collect())
        .transpose()
}

#[derive(Default)]
pub struct Table {
    pub by_hash: crate::lookup::Lookup<[u8; 32], Arc<Key>>,
    pub keys: BTreeMap<String, Arc<Key>>,
    pub tenants: BTreeMap<String, Arc<Tenant>>,
}

pub struct Directory {
    pub table: ArcSwap<Table>,
    base_keys: Vec<KeyDef>,
    base_tenants: BTreeMap<String, TenantSection>,
    overlay: Mutex<Overlay>,
    states: DashMap<String, Arc<ScopeState>>,
}

pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(secret: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Directory {
    pub fn new(
        keys: Vec<KeyDef>,
        tenants: BTreeMap<String, TenantSection>,
    ) -> Result<Directory, String> {
        let d = Directory {
            table: ArcSwap::from_pointee(Table::default()),
            base_keys: keys,
            base_tenants: tenants,
            overlay: Mutex::new(Overlay::default()),
            states: DashMap::new(),
        };
        let table = d.build(&Overlay::default())?;
        d.table.store(Arc::new(table));
        Ok(d)
    }

    pub fn state(&self, scope: &str) -> Arc<ScopeState> {
        self.states
            .entry(scope.to_string())
            .or_insert_with(|| {
                Arc::new(ScopeState {
                    tag: fxhash(scope),
                    name: scope.to_string(),
                    ..ScopeState::default()
                })
            })
            .clone()
    }

    pub fn overlay(&self) -> Overlay {
        self.overlay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a change to the overlay; the table is rebuilt and swapped in
    /// only if the result compiles. Returns the new overlay.
    pub fn change(
        &self,
        f: impl FnOnce(&mut Overlay) -> Result<(), String>,
    ) -> Result<Overlay, String> {
        let mut guard = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        f(&mut next)?;
        let table = self.build(&next)?;
        self.table.store(Arc::new(table));
        *guard = next.clone();
        Ok(next)
    }

    /// Replaces the overlay wholesale (loaded from the store).
    pub fn load(&self, overlay: Overlay) -> Result<(), String> {
        self.change(|o| {
            *o = overlay;
            Ok(())
        })
        .map(|_| ())
    }

    /// Definitions as they stand: config, then the overlay.
    pub fn definitions(
        &self,
        overlay: &Overlay,
    ) -> (BTreeMap<String, KeyDef>, BTreeMap<String, TenantSection>) {
        let mut tenants = self.base_tenants.clone();
        for (name, t) in &overlay.tenants {
            match t {
                Some(t) => tenants.insert(name.clone(), t.clone()),
                None => tenants.remove(name),
            };
        }
        let mut keys: BTreeMap<String, KeyDef> = self
            .base_keys
            .iter()
            .map(|k| (k.id.clone(), k.clone()))
            .collect();
        for (id, k) in &overlay.keys {
            match k {
                Some(k) => keys.insert(id.clone(), k.clone()),
                None => keys.remove(id),
            };
        }
        (keys, tenants)
    }

    fn build(&self, overlay: &Overlay) -> Result<Table, String> {
        let (keys, tenant_defs) = self.definitions(overlay);
        let mut t = Table::default();
        for (name, def) in tenant_defs {
            let tenant = Tenant {
                models: globs(&def.models).map_err(|e| format!("tenant '{name}': {e}"))?,
                endpoints: globs(&def.endpoints).map_err(|e| format!("tenant '{name}': {e}"))?,
                limits: Limits::new(&def.limits),
                budget: def.budget.as_ref().map(|b| Arc::new(Budget::new(b))),
                metadata: def.metadata.clone(),
                state: self.state(&format!("t:{name}")),
                name: name.clone(),
                def,
            };
            t.tenants.insert(name, Arc::new(tenant));
        }
        for (id, def) in keys {
            let tenant = t
                .tenants
                .get(&def.tenant)
                .cloned()
                .ok_or_else(|| format!("key '{id}': unknown tenant '{}'", def.tenant))?;
            let hash = parse_hex32(&def.sha256)
                .ok_or_else(|| format!("key '{id}': key_sha256 must be 64 hex digits"))?;
            let key = Arc::new(Key {
                id: id.clone(),
                tenant,
                models: globs(&def.models).map_err(|e| format!("key '{id}': {e}"))?,
                endpoints: globs(&def.endpoints).map_err(|e| format!("key '{id}': {e}"))?,
                limits: Limits::new(&def.limits),
                budget: def.budget.as_ref().map(|b| Arc::new(Budget::new(b))),
                metadata: def.metadata.clone(),
                disabled: def.disabled,
                state: self.state(&format!("k:{id}")),
                def,
            });
            if t.by_hash.insert(hash, key.clone()).is_some() {
                return Err(format!("key '{id}': the same secret as another key"));
            }
            t.keys.insert(id, key);
        }
        Ok(t)
    }
}

/// A stable 64-bit hash (FNV-1a) of a scope name.
pub fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, tenant: &str, secret: &str) -> KeyDef {
        KeyDef {
            id: id.into(),
            tenant: tenant.into(),
            sha256: hex(&sha256(secret)),
            models: None,
            endpoints: None,
            limits: LimitsSection::default(),
            budget: None,
            metadata: BTreeMap::new(),
            disabled: false,
            created_ms: 0,
        }
    }

    #[test]
    fn overlay_changes_keep_counters_and_refuse_bad_tables() {
        let tenants = [("acme".to_string(), TenantSection::default())].into();
        let d = Directory::new(vec![key("a", "acme", "s1")], tenants).unwrap();
        let before = d.table.load().keys["a"].state.clone();
        d.change(|o| {
            o.keys.insert("b".into(), Some(key("b", "acme", "s2")));
            Ok(())
        })
        .unwrap();
        let t = d.table.load();
        assert!(t.by_hash.contains_key(&sha256("s2")));
        assert!(Arc::ptr_eq(&before, &t.keys["a"].state));
        // An unknown tenant is refused and the table stays as it was.
        let err = d
            .change(|o| {
                o.keys.insert("c".into(), Some(key("c", "nope", "s3")));
                Ok(())
            })
            .unwrap_err();
        assert!(err.contains("unknown tenant"));
        assert_eq!(d.table.load().keys.len(), 2);
        // Deleting a config key through the overlay.
        d.change(|o| {
            o.keys.insert("a".into(), None);
            Ok(())
        })
        .unwrap();
        assert!(!d.table.load().by_hash.contains_key(&sha256("s1")));
    }

    #[test]
    fn hex_round_trip() {
        let h = sha256("test");
        assert_eq!(
            hex(&h),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(parse_hex32(&hex(&h)), Some(h));
        assert_eq!(parse_hex32("zz"), None);
    }
}
