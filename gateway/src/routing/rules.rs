//! Content-based routing: an ordered list of rules evaluated before the
//! requested model's pool; the first rule whose conditions all hold picks
//! the model (or a weighted split of models). Patterns compile once, at load.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use http::{HeaderMap, HeaderName};
use regex::Regex;
use sluice_providers::{ChatRequest, Part, Role};

use super::balance::smooth_schedule;
use crate::config::schema::{PromptScope, RouteSection};

/// A `*` / `?` glob, or an exact string.
#[derive(Debug)]
pub enum Glob {
    Exact(String),
    Pattern(Regex),
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if !pattern.contains(['*', '?']) {
            return Ok(Glob::Exact(pattern.to_string()));
        }
        let mut re = String::from("^");
        for c in pattern.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        re.push('$');
        Regex::new(&re)
            .map(Glob::Pattern)
            .map_err(|e| format!("bad glob '{pattern}': {e}"))
    }

    pub fn matches(&self, s: &str) -> bool {
        match self {
            Glob::Exact(e) => e == s,
            Glob::Pattern(re) => re.is_match(s),
        }
    }
}

struct When {
    model: Option<Glob>,
    headers: Vec<(HeaderName, Glob)>,
    tenant: Option<Glob>,
    key: Option<Glob>,
    metadata: Vec<(String, Glob)>,
    regex: Option<Regex>,
    keywords: Option<AhoCorasick>,
    scope: PromptScope,
    min_tokens: Option<u64>,
    max_tokens: Option<u64>,
    has_tools: Option<bool>,
    has_images: Option<bool>,
}

impl When {
    fn needs_request(&self) -> bool {
        self.regex.is_some()
            || self.keywords.is_some()
            || self.min_tokens.is_some()
            || self.max_tokens.is_some()
            || self.has_tools.is_some()
            || self.has_images.is_some()
    }
}

enum Action {
    To(String),
    Split {
        models: Vec<String>,
        schedule: Vec<u16>,
        next: AtomicUsize,
    },
}

struct Rule {
    when: When,
    action: Action,
}

/// The compiled `routes:` list.
#[derive(Default)]
pub struct Routes {
    rules: Vec<Rule>,
    needs_request: bool,
}

/// What a rule looks at.
pub struct RouteInput<'a> {
    pub model: &'a str,
    pub headers: &'a HeaderMap,
    /// The decoded chat request, when the endpoint has one.
    pub request: Option<&'a ChatRequest>,
    /// Estimates prompt tokens of `request`, called at most once.
    pub count_tokens: &'a dyn Fn(&ChatRequest) -> u64,
    /// The authenticated caller, if any.
    pub caller: Option<&'a crate::govern::Caller>,
}

impl Routes {
    /// Compiles `sections`; problems are reported as (path, message).
    pub fn compile(sections: &[RouteSection], models: &[&str]) -> (Routes, Vec<(String, String)>) {
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for (i, r) in sections.iter().enumerate() {
            let path = format!("routes[{i}]");
            let mut bad =
                |field: &str, msg: String| problems.push((format!("{path}.{field}"), msg));
            let known = |m: &str| models.contains(&m);
            let action = match (&r.to, &r.split) {
                (Some(to), None) => {
                    if !known(to) {
                        bad("to", format!("unknown model \"{to}\""));
                    }
                    Action::To(to.clone())
                }
                (None, Some(split)) if !split.is_empty() => {
                    for (j, s) in split.iter().enumerate() {
                        if !known(&s.model) {
                            bad(
                                &format!("split[{j}].model"),
                                format!("unknown model \"{}\"", s.model),
                            );
                        }
                        if s.weight == 0 {
                            bad(
                                &format!("split[{j}].weight"),
                                "weight must be at least 1".into(),
                            );
                        }
                    }
                    let weights: Vec<u32> = split.iter().map(|s| s.weight).collect();
                    Action::Split {
                        models: split.iter().map(|s| s.model.clone()).collect(),
                        schedule: smooth_schedule(&weights),
                        next: AtomicUsize::new(0),
                    }
                }
                _ => {
                    bad(
                        "to",
                        "a route needs exactly one of 'to' or a non-empty 'split'".into(),
                    );
                    continue;
                }
            };
            let w = &r.when;
            let model = match w.model.as_deref().map(Glob::new).transpose() {
                Ok(g) => g,
                Err(e) => {
                    bad("when.model", e);
                    None
                }
            };
            let mut headers = Vec::new();
            for (name, value) in &w.header {
                match (
                    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
                    Glob::new(value),
                ) {
                    (Ok(n), Ok(g)) => headers.push((n, g)),
                    (Err(e), _) => bad("when.header", format!("'{name}': {e}")),
                    (_, Err(e)) => bad("when.header", e),
                }
            }
            let mut who =
                |field: &str, v: &Option<String>| match v.as_deref().map(Glob::new).transpose() {
                    Ok(g) => g,
                    Err(e) => {
                        bad(field, e);
                        None
                    }
                };
            let tenant = who("when.tenant", &w.tenant);
            let key = who("when.key", &w.key);
            let mut metadata = Vec::new();
            for (name, value) in &w.metadata {
                match Glob::new(value) {
                    Ok(g) => metadata.push((name.clone(), g)),
                    Err(e) => bad("when.metadata", e),
                }
            }
            let regex = match w.prompt_regex.as_deref().map(Regex::new).transpose() {
                Ok(r) => r,
                Err(e) => {
                    bad("when.prompt_regex", e.to_string());
                    None
                }
            };
            let keywords = if w.prompt_keywords.is_empty() {
                None
            } else {
                match AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(&w.prompt_keywords)
                {
                    Ok(ac) => Some(ac),
                    Err(e) => {
                        bad("when.prompt_keywords", e.to_string());
                        None
                    }
                }
            };
            let when = When {
                model,
                headers,
                tenant,
                key,
                metadata,
                regex,
                keywords,
                scope: w.prompt_scope,
                min_tokens: w.min_prompt_tokens,
                max_tokens: w.max_prompt_tokens,
                has_tools: w.has_tools,
                has_images: w.has_images,
            };
            rules.push(Rule { when, action });
        }
        let needs_request = rules.iter().any(|r| r.when.needs_request());
        (
            Routes {
                rules,
                needs_request,
            },
            problems,
        )
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule looks inside the request (so it must be decoded).
    pub fn needs_request(&self) -> bool {
        self.needs_request
    }

    /// The model the first matching rule names, if any rule matches.
    pub fn evaluate(&self, input: &RouteInput<'_>) -> Option<&str> {
        let tokens = OnceCell::new();
        let rule = self
            .rules
            .iter()
            .find(|r| matches(&r.when, input, &tokens))?;
        Some(match &rule.action {
            Action::To(m) => m.as_str(),
            Action::Split {
                models,
                schedule,
                next,
            } => {
                let i = schedule[next.fetch_add(1, Relaxed) % schedule.len()];
                models[usize::from(i)].as_str()
            }
        })
    }
}

fn matches(w: &When, input: &RouteInput<'_>, tokens: &OnceCell<u64>) -> bool {
    if let Some(g) = &w.model {
        if !g.matches(input.model) {
            return false;
        }
    }
    if w.tenant.is_some() || w.key.is_some() || !w.metadata.is_empty() {
        // Conditions on the caller never hold for anonymous requests.
        let Some(c) = input.caller else {
            return false;
        };
        if w.tenant
            .as_ref()
            .is_some_and(|g| !g.matches(&c.tenant.name))
            || w.key.as_ref().is_some_and(|g| !g.matches(&c.subject))
            || w.metadata
                .iter()
                .any(|(name, g)| !c.label(name).is_some_and(|v| g.matches(v)))
        {
            return false;
        }
    }
    for (name, g) in &w.headers {
        let ok = input
            .headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| g.matches(v)));
        if !ok {
            return false;
        }
    }
    if !w.needs_request() {
        return true;
    }
    // Conditions on content never hold for requests without any.
    let Some(req) = input.request else {
        return false;
    };
    if w.has_tools.is_some_and(|want| want == req.tools.is_empty()) {
        return false;
    }
    if let Some(want) = w.has_images {
        let has = req
            .messages
            .iter()
            .any(|m| m.content.iter().any(|p| matches!(p, Part::Image(_))));
        if want != has {
            return false;
        }
    }
    if w.min_tokens.is_some() || w.max_tokens.is_some() {
        let n = *tokens.get_or_init(|| (input.count_tokens)(req));
        if w.min_tokens.is_some_and(|min| n < min) || w.max_tokens.is_some_and(|max| n > max) {
            return false;
        }
    }
    if w.regex.is_some() || w.keywords.is_some() {
        let in_scope = |role: Role| match w.scope {
            PromptScope::All => true,
            PromptScope::System => matches!(role, Role::System | Role::Developer),
            PromptScope::User => matches!(role, Role::User | Role::Tool),
        };
        let texts = || {
            req.messages
                .iter()
                .filter(|m| in_scope(m.role))
                .flat_map(|m| m.content.iter())
                .filter_map(|p| match p {
                    Part::Text(t) => Some(t.as_str()),
                    Part::Image(_) => None,
                })
        };
        if let Some(re) = &w.regex {
            if !texts().any(|t| re.is_match(t)) {
                return false;
            }
        }
        if let Some(ac) = &w.keywords {
            if !texts().any(|t| ac.is_match(t)) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use sluice_providers::{Format, Image, Message, Tool};

    use super::*;
    use crate::config::schema::{SplitSection, WhenSection};

    fn route(when: WhenSection, to: &str) -> RouteSection {
        RouteSection {
            when,
            to: Some(to.into()),
            split: None,
        }
    }

    fn req(system: &str, user: &str) -> ChatRequest {
        let mut r = ChatRequest::new(Format::OpenAi, "m");
        r.messages.push(Message::text(Role::System, system));
        r.messages.push(Message::text(Role::User, user));
        r
    }

    fn eval<'a>(
        routes: &'a Routes,
        model: &str,
        headers: &HeaderMap,
        r: Option<&ChatRequest>,
    ) -> Option<&'a str> {
        let count = |r: &ChatRequest| r.texts().map(|t| t.len() as u64 / 4).sum();
        routes.evaluate(&RouteInput {
            model,
            headers,
            request: r,
            count_tokens: &count,
            caller: None,
        })
    }

    #[test]
    fn each_matcher_routes_and_first_match_wins() {
        let models = [
            "coder", "cheap", "long", "tools", "vision", "gpt", "sys", "kw",
        ];
        let sections = vec![
            route(
                WhenSection {
                    prompt_regex: Some(r"(?i)\b(code|rust)\b".into()),
                    ..Default::default()
                },
                "coder",
            ),
            route(
                WhenSection {
                    header: [("X-Tier".to_string(), "free".to_string())].into(),
                    ..Default::default()
                },
                "cheap",
            ),
            route(
                WhenSection {
                    min_prompt_tokens: Some(100),
                    ..Default::default()
                },
                "long",
            ),
            route(
                WhenSection {
                    has_tools: Some(true),
                    ..Default::default()
                },
                "tools",
            ),
            route(
                WhenSection {
                    has_images: Some(true),
                    ..Default::default()
                },
                "vision",
            ),
            route(
                WhenSection {
                    prompt_keywords: vec!["Pirate".into()],
                    prompt_scope: PromptScope::System,
                    ..Default::default()
                },
                "sys",
            ),
            route(
                WhenSection {
                    model: Some("gpt-4*".into()),
                    ..Default::default()
                },
                "gpt",
            ),
        ];
        let (routes, problems) = Routes::compile(&sections, &models);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(routes.needs_request());
        let none = HeaderMap::new();
        let plain = req("be brief", "hello");
        assert_eq!(
            eval(&routes, "m", &none, Some(&req("s", "write Rust please"))),
            Some("coder")
        );
        let mut free = HeaderMap::new();
        free.insert("x-tier", "free".parse().unwrap());
        // The first rule wins over the header rule.
        assert_eq!(
            eval(&routes, "m", &free, Some(&req("s", "some code"))),
            Some("coder")
        );
        assert_eq!(eval(&routes, "m", &free, Some(&plain)), Some("cheap"));
        assert_eq!(
            eval(&routes, "m", &none, Some(&req("s", &"word ".repeat(100)))),
            Some("long")
        );
        let mut tools = plain.clone();
        tools.tools.push(Tool {
            name: "f".into(),
            description: None,
            parameters: serde_json::json!({}),
            strict: None,
        });
        assert_eq!(eval(&routes, "m", &none, Some(&tools)), Some("tools"));
        let mut vision = plain.clone();
        vision.messages[1]
            .content
            .push(Part::Image(Image::from_url("https://x/a.png", None)));
        assert_eq!(eval(&routes, "m", &none, Some(&vision)), Some("vision"));
        // Keywords look at the configured scope only.
        assert_eq!(
            eval(&routes, "m", &none, Some(&req("talk like a PIRATE", "hi"))),
            Some("sys")
        );
        assert_eq!(eval(&routes, "m", &none, Some(&req("s", "pirate"))), None);
        assert_eq!(eval(&routes, "gpt-4o", &none, Some(&plain)), Some("gpt"));
        assert_eq!(eval(&routes, "claude", &none, Some(&plain)), None);
        // Content conditions never hold without a request body to look at.
        assert_eq!(eval(&routes, "m", &none, None), None);
    }

    #[test]
    fn split_follows_weights_smoothly() {
        let sections = vec![RouteSection {
            when: WhenSection::default(),
            to: None,
            split: Some(vec![
                SplitSection {
                    model: "a".into(),
                    weight: 3,
                },
                SplitSection {
                    model: "b".into(),
                    weight: 1,
                },
            ]),
        }];
        let (routes, problems) = Routes::compile(&sections, &["a", "b"]);
        assert!(problems.is_empty());
        let h = HeaderMap::new();
        let picks: Vec<_> = (0..8)
            .map(|_| eval(&routes, "x", &h, None).unwrap())
            .collect();
        assert_eq!(picks, ["a", "a", "b", "a", "a", "a", "b", "a"]);
    }

    #[test]
    fn bad_rules_are_reported() {
        let sections = vec![
            route(
                WhenSection {
                    prompt_regex: Some("(".into()),
                    ..Default::default()
                },
                "nope",
            ),
            RouteSection {
                when: WhenSection::default(),
                to: None,
                split: None,
            },
        ];
        let (_, problems) = Routes::compile(&sections, &["a"]);
        let text = format!("{problems:?}");
        assert!(
            text.contains("routes[0].to") && text.contains("unknown model"),
            "{text}"
        );
        assert!(text.contains("routes[0].when.prompt_regex"), "{text}");
        assert!(text.contains("routes[1].to"), "{text}");
    }

    #[test]
    fn globs() {
        assert!(Glob::new("gpt-4*").unwrap().matches("gpt-4o-mini"));
        assert!(!Glob::new("gpt-4*").unwrap().matches("xgpt-4"));
        assert!(Glob::new("a?c").unwrap().matches("abc"));
        assert!(Glob::new("a.c").unwrap().matches("a.c"));
        assert!(!Glob::new("a.c").unwrap().matches("abc"));
    }
}
