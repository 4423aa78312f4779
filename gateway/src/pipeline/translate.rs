//! Stages `decode` + `encode` when the client's format differs from the
//! upstream's: requests re-encoded per target, responses and errors
//! translated back. Same-format traffic never comes here.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::json;
use sluice_providers::{
    ChatRequest, CodecError, EncodeOptions, Format, ProviderError, ResponseMeta, TextRequest,
};

use super::probe::{swap_model, Probe};
use super::read::Endpoint;
use sluice_filters::ChainRun;

use crate::config::schema::ProviderKind;
use crate::errors::GatewayError;
use crate::snapshot::Target;
use crate::upstream::Provider;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Same format: the body went up with only the model swapped.
    Passthrough,
    Chat {
        upstream: Format,
        include_usage: bool,
    },
    Embed {
        upstream: Format,
        base64: bool,
    },
}

pub struct Prepared {
    pub body: Bytes,
    pub path: String,
    pub plan: Plan,
    /// Request fields the target could not express (`x-sluice-dropped-params`).
    pub dropped: Option<String>,
}

fn bad_request(e: CodecError) -> GatewayError {
    GatewayError::BadRequest(e.to_string())
}

/// The client's request as every attempt sees it: its body and, once
/// something needed it (filters, content rules, a target in another format),
/// the decoded canonical request.
pub struct Input {
    pub endpoint: Endpoint,
    pub inbound: Format,
    pub body: Bytes,
    /// Where the `model` value sits in `body`.
    pub model_span: Range<usize>,
    pub stream: bool,
    chat: Option<ChatRequest>,
    /// Filters ran: chat responses then take the decoding relay, so the
    /// filters see them too.
    filtered: bool,
    /// Filters changed the request, so the client's bytes no longer do.
    modified: bool,
    /// Filters only looked, at the texts the probe read: the request was
    /// not decoded, and its bytes stand.
    looked: bool,
}

impl Input {
    pub fn new(endpoint: Endpoint, body: Bytes, probe: &Probe<'_>) -> Input {
        Input {
            endpoint,
            inbound: endpoint.format(),
            body,
            model_span: probe.model_span.clone(),
            stream: probe.stream,
            chat: None,
            filtered: false,
            modified: false,
            looked: false,
        }
    }

    /// The chat request, decoded before the input was made.
    pub fn decoded(&mut self, req: ChatRequest) {
        self.chat = Some(req);
    }

    /// The canonical chat request, decoded on first use; `None` for
    /// endpoints without one.
    pub fn chat(&mut self) -> Result<Option<&mut ChatRequest>, GatewayError> {
        if !matches!(
            self.endpoint,
            Endpoint::ChatCompletions | Endpoint::Messages
        ) {
            return Ok(None);
        }
        if self.chat.is_none() {
            let req = self
                .inbound
                .codec()
                .decode_request(&self.body)
                .map_err(bad_request)?;
            self.chat = Some(req);
        }
        Ok(self.chat.as_mut())
    }

    /// Runs the request filters, once per request whatever the attempts:
    /// over `texts` (the request's, read by the probe) when every filter
    /// only looks, else over the decoded request.
    pub fn filter(
        &mut self,
        run: &mut ChainRun,
        texts: Option<&TextRequest<'_>>,
    ) -> Result<(), GatewayError> {
        self.filtered = true;
        if let Some(texts) = texts.filter(|_| self.chat.is_none() && !self.stream) {
            if let Some(looked) = run.look(texts) {
                self.looked = true;
                return Ok(looked?);
            }
        }
        if let Some(req) = self.chat()? {
            run.request(req)?;
            self.modified = run.cx.request_modified;
        } else if let Some(body) = filter_texts(self.endpoint, &self.body, run)? {
            // Embedding inputs and completion prompts: a new body, re-probed
            // for where its `model` now sits.
            self.model_span = super::probe::probe(self.endpoint, &body)?.model_span;
            self.body = body;
        }
        Ok(())
    }

    /// The client's bytes with the target's model, and its quirks applied.
    fn swapped(&self, target: &Target) -> Bytes {
        let out = swap_model(
            &self.body,
            self.model_span.clone(),
            &target.upstream_model_json,
        );
        let quirks = &target.provider.quirks;
        if quirks.edits_body() {
            Bytes::from(quirks.apply(out.to_vec()))
        } else {
            out
        }
    }

    /// The request as `target` takes it.
    pub fn prepare(&mut self, target: &Target) -> Result<Prepared, GatewayError> {
        let provider = &target.provider;
        let upstream = provider.format;
        let path = provider.path(self.endpoint, &target.upstream_model, self.stream);
        // Azure opens streams with a content-filter chunk OpenAI clients do not
        // expect (no id, no choices): its streams are normalised by re-encoding.
        let normalise = provider.kind == ProviderKind::Azure && self.stream;
        let same = self.inbound == upstream && !normalise;
        let chat = matches!(
            self.endpoint,
            Endpoint::ChatCompletions | Endpoint::Messages
        );
        // The client's bytes go as they are (model swapped): untouched by
        // filters, or only looked at (texts alone, so no stream whose usage
        // must be asked for).
        if same && (self.looked || !(self.filtered && chat)) {
            let plan = if self.looked {
                Plan::Chat {
                    upstream,
                    include_usage: false,
                }
            } else {
                Plan::Passthrough
            };
            return Ok(Prepared {
                body: self.swapped(target),
                path,
                plan,
                dropped: None,
            });
        }
        match self.endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => {
                let modified = self.modified;
                let Some(req) = self.chat()? else {
                    return Err(GatewayError::Internal(
                        "chat endpoint without a request".into(),
                    ));
                };
                let plan = Plan::Chat {
                    upstream,
                    include_usage: req.include_usage,
                };
                // OpenAI-style streams report usage only when asked.
                let ask_usage = req.stream
                    && !req.include_usage
                    && upstream == Format::OpenAi
                    && provider.quirks.stream_usage;
                let opts = EncodeOptions {
                    model: &target.upstream_model,
                    default_max_tokens: provider.default_max_tokens,
                    // Usage is needed to translate the stream's end faithfully.
                    stream_usage: req.stream && provider.quirks.stream_usage,
                };
                if same && !modified && !ask_usage {
                    // Filters only looked: forward the client's bytes.
                    return Ok(Prepared {
                        body: self.swapped(target),
                        path,
                        plan,
                        dropped: None,
                    });
                }
                let enc = upstream
                    .codec()
                    .encode_request(req, &opts)
                    .map_err(bad_request)?;
                let dropped = dropped(provider, enc.dropped)?;
                Ok(Prepared {
                    body: Bytes::from(provider.quirks.apply(enc.body)),
                    path,
                    plan,
                    dropped,
                })
            }
            Endpoint::Embeddings => {
                let req = self
                    .inbound
                    .codec()
                    .decode_embed_request(&self.body)
                    .map_err(bad_request)?;
                let (body, _) = upstream
                    .codec()
                    .encode_embed_request(&req, &target.upstream_model)
                    .map_err(bad_request)?;
                Ok(Prepared {
                    body: Bytes::from(body),
                    path,
                    plan: Plan::Embed {
                        upstream,
                        base64: req.base64,
                    },
                    dropped: None,
                })
            }
            Endpoint::Completions => Err(GatewayError::BadRequest(format!(
                "/v1/completions needs an OpenAI-format provider; '{}' is {}",
                provider.name,
                provider.kind.as_str()
            ))),
            Endpoint::Models | Endpoint::CountTokens | Endpoint::KeyInfo => Err(
                GatewayError::Internal("endpoint has no upstream translation".into()),
            ),
        }
    }
}

/// Runs the text filters over an embeddings `input` or a completions
/// `prompt`; returns the rewritten body when they changed something.
fn filter_texts(
    endpoint: Endpoint,
    body: &Bytes,
    run: &mut ChainRun,
) -> Result<Option<Bytes>, GatewayError> {
    let field = match endpoint {
        Endpoint::Embeddings => "input",
        Endpoint::Completions => "prompt",
        _ => return Ok(None),
    };
    let mut v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::BadRequest(format!("Invalid JSON body: {e}")))?;
    let (texts, single) = match v.get(field) {
        Some(serde_json::Value::String(s)) => (vec![s.clone()], true),
        Some(serde_json::Value::Array(a)) if a.iter().all(serde_json::Value::is_string) => (
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            false,
        ),
        // Token arrays carry no text to inspect.
        _ => return Ok(None),
    };
    let mut req = ChatRequest::new(Format::OpenAi, "");
    req.messages = texts
        .into_iter()
        .map(|t| sluice_providers::Message::text(sluice_providers::Role::User, t))
        .collect();
    run.texts(&mut req)?;
    if !run.cx.request_modified {
        return Ok(None);
    }
    let mut out: Vec<serde_json::Value> = req
        .messages
        .iter()
        .map(|m| serde_json::Value::String(m.joined_text()))
        .collect();
    if let Some(o) = v.as_object_mut() {
        let new = if single {
            out.pop().unwrap_or_default()
        } else {
            serde_json::Value::Array(out)
        };
        o.insert(field.into(), new);
    }
    Ok(Some(Bytes::from(v.to_string())))
}

fn dropped(provider: &Provider, dropped: Vec<String>) -> Result<Option<String>, GatewayError> {
    if dropped.is_empty() {
        return Ok(None);
    }
    let list = dropped.join(",");
    if provider.strict {
        return Err(GatewayError::BadRequest(format!(
            "Provider '{}' ({}) cannot express these parameters: {list}",
            provider.name,
            provider.kind.as_str()
        )));
    }
    Ok(Some(list))
}

/// Ids and timestamps for responses whose upstream gave none.
pub fn meta() -> ResponseMeta {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ResponseMeta {
        id: format!("sluice-{now:x}{n:06x}"),
        created: now,
    }
}

/// An upstream error body, re-rendered in the client's format.
pub fn error_body(upstream: Format, inbound: Format, status: u16, body: &[u8]) -> Bytes {
    let err: ProviderError = upstream.codec().decode_error(status, body);
    Bytes::from(inbound.codec().encode_error(&err))
}

/// A complete 2xx upstream body, translated for the client.
pub fn response_body(
    plan: Plan,
    inbound: Format,
    body: &Bytes,
    provider: &Provider,
    model: &str,
    mut filters: Option<&mut ChainRun>,
) -> Result<Bytes, GatewayError> {
    let broken = |e: CodecError| GatewayError::UpstreamBroken {
        provider: provider.name.clone(),
        cause: e.to_string(),
    };
    match plan {
        Plan::Passthrough => Ok(body.clone()),
        Plan::Chat { upstream, .. } => {
            if upstream == inbound {
                if let Some(run) = filters.as_deref_mut() {
                    if !run.needs_response() {
                        if let Some(u) = upstream.codec().decode_usage(body) {
                            run.cx.usage = Some(u);
                            return Ok(body.clone());
                        }
                    }
                }
            }
            let mut resp = upstream
                .codec()
                .decode_response(body, &meta())
                .map_err(broken)?;
            let mut modified = false;
            if let Some(run) = filters {
                run.response(&mut resp)?;
                modified = run.cx.response_modified;
            }
            if upstream == inbound && !modified {
                return Ok(body.clone());
            }
            Ok(Bytes::from(inbound.codec().encode_response(&resp)))
        }
        Plan::Embed { upstream, base64 } => {
            let mut resp = upstream
                .codec()
                .decode_embed_response(body)
                .map_err(broken)?;
            if resp.model.is_empty() {
                resp.model = model.to_string();
            }
            if let Some(run) = filters {
                run.cx.usage = Some(sluice_providers::Usage {
                    prompt_tokens: resp.prompt_tokens,
                    ..Default::default()
                });
            }
            Ok(Bytes::from(
                inbound.codec().encode_embed_response(&resp, base64),
            ))
        }
    }
}

/// `count_tokens` answered locally: a character-based estimate until a
/// tokenizer is wired in for non-Anthropic targets.
pub fn count_tokens(body: &[u8]) -> Result<Bytes, GatewayError> {
    // count_tokens takes a Messages body without `max_tokens`.
    let mut v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::BadRequest(format!("Invalid JSON body: {e}")))?;
    if let Some(o) = v.as_object_mut() {
        o.entry("max_tokens").or_insert(json!(1));
    }
    let req = Format::Anthropic
        .codec()
        .decode_request(v.to_string().as_bytes())
        .map_err(bad_request)?;
    let chars: usize = req.texts().map(|t| t.chars().count()).sum::<usize>()
        + req
            .tools
            .iter()
            .map(|t| t.name.len() + t.parameters.to_string().len())
            .sum::<usize>();
    let tokens = chars.div_ceil(4) + 3 * req.messages.len();
    Ok(Bytes::from(json!({ "input_tokens": tokens }).to_string()))
}
