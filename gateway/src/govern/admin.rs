//! The governance half of the admin API: `/admin/keys`, `/admin/tenants`,
//! `/admin/usage`. Answers (status, JSON); the admin listener does the I/O.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::new_secret;
use super::directory::{hex, sha256, KeyDef, Overlay};
use super::Governance;
use crate::config::schema::{BudgetSection, LimitsSection, TenantSection};

pub type Reply = (u16, Value);

fn err(status: u16, message: impl Into<String>) -> Reply {
    let kind = match status {
        401 => "authentication_error",
        404 => "not_found_error",
        409 => "conflict_error",
        _ if status >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    (
        status,
        json!({"error": {"message": message.into(), "type": kind}}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    tenant: String,
    id: Option<String>,
    models: Option<Vec<String>>,
    endpoints: Option<Vec<String>>,
    #[serde(default)]
    limits: LimitsSection,
    budget: Option<BudgetSection>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// Fields a PATCH may change; absent ones stay.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPatch {
    disabled: Option<bool>,
    models: Option<Option<Vec<String>>>,
    endpoints: Option<Option<Vec<String>>>,
    limits: Option<LimitsSection>,
    budget: Option<Option<BudgetSection>>,
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct NewTenant {
    name: String,
    #[serde(flatten)]
    def: TenantSection,
}

fn key_json(k: &KeyDef) -> Value {
    json!({
        "id": k.id, "tenant": k.tenant, "disabled": k.disabled,
        "models": k.models, "endpoints": k.endpoints, "limits": k.limits,
        "budget": k.budget, "metadata": k.metadata, "created_ms": k.created_ms,
        // Enough to tell keys apart, never enough to use one.
        "sha256_prefix": k.sha256.get(..8),
    })
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Governance {
    /// Serves one admin request under `/admin/keys`, `/admin/tenants` or
    /// `/admin/usage`; `None` when the path is none of these.
    pub async fn admin(&self, method: &str, path: &str, query: &str, body: &[u8]) -> Option<Reply> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
        // Changes one at a time: each reads the state it then changes.
        let _serial = if method == "GET" {
            None
        } else {
            Some(self.admin_lock.lock().await)
        };
        let r = match (method, parts.as_slice()) {
            ("GET", ["keys"]) => self.list_keys(),
            ("POST", ["keys"]) => self.create_key(body).await,
            ("GET", ["keys", id]) => self.get_key(id),
            ("DELETE", ["keys", id]) => self.delete_key(id).await,
            ("PATCH", ["keys", id]) => self.patch_key(id, body).await,
            ("POST", ["keys", id, "rotate"]) => self.rotate_key(id).await,
            ("POST", ["keys", id, "disable"]) => self.set_disabled(id, true).await,
            ("POST", ["keys", id, "enable"]) => self.set_disabled(id, false).await,
            ("GET", ["tenants"]) => self.list_tenants(),
            ("POST", ["tenants"]) => self.put_tenant(body).await,
            ("GET", ["tenants", name]) => self.get_tenant(name),
            ("DELETE", ["tenants", name]) => self.delete_tenant(name).await,
            ("GET", ["usage"]) => self.usage_report(query),
            (_, ["keys" | "tenants" | "usage", ..]) => {
                err(405, format!("{method} is not allowed on {path}"))
            }
            _ => return None,
        };
        Some(r)
    }

    /// Applies a change, then keeps it in the store.
    async fn apply(
        &self,
        f: impl FnOnce(&mut Overlay) -> Result<(), String> + Send,
    ) -> Result<(), Reply> {
        let Some(shared) = &self.shared else {
            let before = self.dir.overlay();
            let overlay = self.dir.change(f).map_err(|e| err(400, e))?;
            if let Err(e) = self.persist(&overlay) {
                // Not kept, so not applied either.
                let _ = self.dir.load(before);
                return Err(err(500, e));
            }
            return Ok(());
        };
        // Change the latest overlay, then store it only if nobody else
        // changed it meanwhile; on a conflict the store's version is reloaded.
        if !shared.is_up() {
            return Err(err(
                503,
                "the shared store is unreachable: changes cannot be shared",
            ));
        }
        super::service::sync_overlay(self).await;
        let version = shared
            .overlay_version
            .load(std::sync::atomic::Ordering::Acquire);
        let before = self.dir.overlay();
        let overlay = self.dir.change(f).map_err(|e| err(400, e))?;
        if let Err(e) = shared.save_overlay(version, &overlay).await {
            let _ = self.dir.load(before);
            shared
                .overlay_version
                .store(-1, std::sync::atomic::Ordering::Release);
            super::service::sync_overlay(self).await;
            return Err(err(409, e));
        }
        Ok(())
    }

    /// Writes the overlay where the store keeps it.
    pub fn persist(&self, overlay: &Overlay) -> Result<(), String> {
        let Some(path) = self.state_file() else {
            return Ok(());
        };
        let tmp = format!("{path}.tmp");
        let data = serde_json::to_vec_pretty(overlay).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, data)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| format!("cannot save {path}: {e}"))
    }

    fn current_key(&self, id: &str) -> Option<KeyDef> {
        let (keys, _) = self.dir.definitions(&self.dir.overlay());
        keys.get(id).cloned()
    }

    fn list_keys(&self) -> Reply {
        let (keys, _) = self.dir.definitions(&self.dir.overlay());
        (
            200,
            json!({"data": keys.values().map(key_json).collect::<Vec<_>>()}),
        )
    }

    fn get_key(&self, id: &str) -> Reply {
        match self.current_key(id) {
            Some(k) => (200, key_json(&k)),
            None => err(404, format!("no key '{id}'")),
        }
    }

    async fn create_key(&self, body: &[u8]) -> Reply {
        let req: NewKey = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return err(400, format!("invalid body: {e}")),
        };
        let secret = match new_secret() {
            Ok(s) => s,
            Err(e) => return err(500, e),
        };
        let id = match req.id {
            Some(id) => id,
            None => format!("key-{}", &hex(&sha256(&secret))[..12]),
        };
        if !valid_id(&id) {
            return err(
                400,
                "id: letters, digits, '-', '_' and '.' only, at most 128",
            );
        }
        if self.current_key(&id).is_some() {
            return err(409, format!("key '{id}' exists; rotate or delete it"));
        }
        let def = KeyDef {
            id: id.clone(),
            tenant: req.tenant.clone(),
            sha256: hex(&sha256(&secret)),
            models: req.models,
            endpoints: req.endpoints,
            limits: req.limits,
            budget: req.budget,
            metadata: req.metadata,
            disabled: false,
            created_ms: super::limits::now_nanos() / 1_000_000,
        };
        if let Err(r) = self
            .apply(|o| {
                // Another instance may have created it since the check above.
                if matches!(o.keys.get(&id), Some(Some(_))) {
                    return Err(format!("key '{id}' exists; rotate or delete it"));
                }
                o.keys.insert(id.clone(), Some(def));
                Ok(())
            })
            .await
        {
            return r;
        }
        (201, json!({"id": id, "tenant": req.tenant, "key": secret}))
    }

    async fn edit_key(&self, id: &str, f: impl FnOnce(&mut KeyDef)) -> Result<KeyDef, Reply> {
        let Some(mut def) = self.current_key(id) else {
            return Err(err(404, format!("no key '{id}'")));
        };
        f(&mut def);
        let out = def.clone();
        self.apply(|o| {
            // Another instance may have deleted it since it was read.
            if matches!(o.keys.get(id), Some(None)) {
                return Err(format!("key '{id}' was deleted"));
            }
            o.keys.insert(id.to_string(), Some(def));
            Ok(())
        })
        .await?;
        Ok(out)
    }

    async fn set_disabled(&self, id: &str, disabled: bool) -> Reply {
        match self.edit_key(id, |k| k.disabled = disabled).await {
            Ok(k) => (200, key_json(&k)),
            Err(r) => r,
        }
    }

    async fn patch_key(&self, id: &str, body: &[u8]) -> Reply {
        let p: KeyPatch = match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => return err(400, format!("invalid body: {e}")),
        };
        let r = self
            .edit_key(id, |k| {
                if let Some(d) = p.disabled {
                    k.disabled = d;
                }
                if let Some(m) = p.models {
                    k.models = m;
                }
                if let Some(e) = p.endpoints {
                    k.endpoints = e;
                }
                if let Some(l) = p.limits {
                    k.limits = l;
                }
                if let Some(b) = p.budget {
                    k.budget = b;
                }
                if let Some(m) = p.metadata {
                    k.metadata = m;
                }
            })
            .await;
        match r {
            Ok(k) => (200, key_json(&k)),
            Err(r) => r,
        }
    }

    async fn rotate_key(&self, id: &str) -> Reply {
        let secret = match new_secret() {
            Ok(s) => s,
            Err(e) => return err(500, e),
        };
        let hash = hex(&sha256(&secret));
        match self.edit_key(id, |k| k.sha256 = hash).await {
            Ok(k) => (200, json!({"id": k.id, "tenant": k.tenant, "key": secret})),
            Err(r) => r,
        }
    }

    async fn delete_key(&self, id: &str) -> Reply {
        if self.current_key(id).is_none() {
            return err(404, format!("no key '{id}'"));
        }
        match self
            .apply(|o| {
                o.keys.insert(id.to_string(), None);
                Ok(())
            })
            .await
        {
            Ok(()) => (200, json!({"id": id, "deleted": true})),
            Err(r) => r,
        }
    }

    fn list_tenants(&self) -> Reply {
        let (_, tenants) = self.dir.definitions(&self.dir.overlay());
        let data: Vec<Value> = tenants
            .iter()
            .map(|(n, t)| {
                let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
                v["name"] = n.clone().into();
                v
            })
            .collect();
        (200, json!({ "data": data }))
    }

    fn get_tenant(&self, name: &str) -> Reply {
        let (_, tenants) = self.dir.definitions(&self.dir.overlay());
        match tenants.get(name) {
            Some(t) => {
                let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
                v["name"] = name.into();
                (200, v)
            }
            None => err(404, format!("no tenant '{name}'")),
        }
    }

    /// Creates or replaces a tenant.
    async fn put_tenant(&self, body: &[u8]) -> Reply {
        let t: NewTenant = match serde_json::from_slice(body) {
            Ok(t) => t,
            Err(e) => return err(400, format!("invalid body: {e}")),
        };
        if !valid_id(&t.name) {
            return err(
                400,
                "name: letters, digits, '-', '_' and '.' only, at most 128",
            );
        }
        let name = t.name.clone();
        match self
            .apply(|o| {
                o.tenants.insert(t.name, Some(t.def));
                Ok(())
            })
            .await
        {
            Ok(()) => self.get_tenant(&name),
            Err(r) => r,
        }
    }

    async fn delete_tenant(&self, name: &str) -> Reply {
        let (keys, tenants) = self.dir.definitions(&self.dir.overlay());
        if !tenants.contains_key(name) {
            return err(404, format!("no tenant '{name}'"));
        }
        if let Some(k) = keys.values().find(|k| k.tenant == name) {
            return err(409, format!("tenant '{name}' still has key '{}'", k.id));
        }
        match self
            .apply(|o| {
                o.tenants.insert(name.to_string(), None);
                Ok(())
            })
            .await
        {
            Ok(()) => (200, json!({"name": name, "deleted": true})),
            Err(r) => r,
        }
    }

    fn usage_report(&self, query: &str) -> Reply {
        let Some(log) = self.usage.get() else {
            return err(404, "no usage log is configured (`usage_log:`)");
        };
        let q = super::usage_query::Query::parse(query);
        match q.and_then(|q| log.records().map(|r| q.report(&r))) {
            Ok(v) => (200, v),
            Err(e) => err(400, e),
        }
    }
}
