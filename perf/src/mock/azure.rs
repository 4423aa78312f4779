//! Azure OpenAI: OpenAI's bodies behind deployment-scoped URLs
//! (`/openai/deployments/{deployment}/…?api-version=…`), an `api-key`
//! header, and the deployment name reported as the model.

use serde_json::json;

use super::common::{json_reply, Ctx, Reply};
use super::format::query_param;
use super::openai;
use crate::http1;

pub fn admit(key: Option<&str>, headers: &[httparse::Header<'_>]) -> Option<Reply> {
    let key = key?;
    if http1::header(headers, "api-key").is_some_and(|v| v == key.as_bytes()) {
        return None;
    }
    // Azure's gateway answers bad keys itself, in its own (non-OpenAI) shape.
    Some(json_reply(
        401,
        &json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
    ))
}

pub fn route(method: &str, path: &str, body: &[u8], cx: &Ctx<'_>) -> Reply {
    let bare = path.split('?').next().unwrap_or(path);
    let Some((deployment, op)) = bare
        .strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(d, _)| !d.is_empty())
    else {
        return openai::error(404, "Resource not found", None);
    };
    if !matches!(op, "chat/completions" | "completions" | "embeddings") {
        return openai::error(404, "Resource not found", None);
    }
    if query_param(path, "api-version").is_none_or(str::is_empty) {
        return openai::error_with(
            400,
            "Missing required query parameter: 'api-version'.",
            Some("api-version"),
            Some("missing_required_parameter"),
            None,
        );
    }
    if method != "POST" {
        return openai::error(405, &format!("Method {method} not allowed"), None);
    }
    match op {
        "chat/completions" => openai::chat(body, cx, Some(deployment)),
        "completions" => openai::completions(body, cx, Some(deployment)),
        _ => openai::embeddings(body, cx, Some(deployment)),
    }
}
