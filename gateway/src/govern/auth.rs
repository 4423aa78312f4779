//! Authentication: virtual keys in any SDK's header, or JWTs.

use http::HeaderMap;

use super::directory::{hex, sha256};
use super::jwt::Jwt;
use super::{Caller, Governance};
use crate::config::schema::AuthMode;
use crate::errors::GatewayError;

impl Governance {
    /// Whether `Authorization: Bearer <admin_token>` was presented.
    pub fn is_admin(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.admin_token else {
            return false;
        };
        let presented = credential(headers).unwrap_or("");
        // Compare digests: no early exit that leaks the token's prefix.
        sha256(presented) == sha256(token.expose())
    }

    /// The caller, or 401. `None` when auth is off.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Caller>, GatewayError> {
        if self.mode == AuthMode::None {
            return Ok(None);
        }
        let Some(secret) = credential(headers) else {
            return Err(GatewayError::Unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>', \
                 'x-api-key' or 'api-key'."
                    .into(),
            ));
        };
        let jwt = match (self.mode, &self.jwt) {
            (AuthMode::Jwt, Some(j)) => Some(j),
            (AuthMode::KeysOrJwt, Some(j)) if Jwt::looks_like(secret) => Some(j),
            _ => None,
        };
        match jwt {
            Some(j) => self.jwt_caller(j, secret).await.map(Some),
            None => self.key_caller(secret).map(Some),
        }
    }

    async fn jwt_caller(&self, jwt: &Jwt, token: &str) -> Result<Caller, GatewayError> {
        let claims = jwt
            .verify(token)
            .await
            .map_err(|e| GatewayError::Unauthorized(format!("Invalid token: {e}")))?;
        let table = self.dir.table.load();
        let tenant = table.tenants.get(&claims.tenant).cloned().ok_or_else(|| {
            GatewayError::Unauthorized(format!(
                "Invalid token: tenant '{}' is not known",
                claims.tenant
            ))
        })?;
        Ok(Caller {
            tenant,
            key: None,
            subject: claims.subject,
            roles: claims.roles,
        })
    }

    /// The caller holding the virtual key `secret`.
    pub fn key_caller(&self, secret: &str) -> Result<Caller, GatewayError> {
        let table = self.dir.table.load();
        match table.by_hash.get(&sha256(secret)) {
            Some(k) if k.disabled => Err(GatewayError::Unauthorized(format!(
                "The API key '{}' is disabled.",
                k.id
            ))),
            Some(k) => Ok(Caller {
                tenant: k.tenant.clone(),
                key: Some(k.clone()),
                subject: k.id.clone(),
                roles: Vec::new(),
            }),
            None => Err(GatewayError::Unauthorized(format!(
                "Incorrect API key provided: {}.",
                redact(secret)
            ))),
        }
    }
}

/// The presented secret: `Authorization: Bearer` (OpenAI), `x-api-key`
/// (Anthropic) or `api-key` (Azure).
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim())
            .filter(|s| !s.is_empty());
    }
    ["x-api-key", "api-key"]
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A presented key as OpenAI shows it in errors: its ends only.
fn redact(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        return "****".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

/// A new key: `sk-sluice-` and 32 random bytes in hex.
pub fn new_secret() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "no randomness available".to_string())?;
    Ok(format!("sk-sluice-{}", hex(&b)))
}
