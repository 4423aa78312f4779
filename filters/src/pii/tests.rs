use proptest::prelude::*;
use sluice_providers::{ChatRequest, Choice, Format, Message, Role, ToolCall};

use super::*;
use crate::config::{Detector, PiiAction, PiiConfig};

/// Deterministic pseudo-random numbers for the generated corpus.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn luhn_complete(prefix: &str) -> String {
    (0..10)
        .map(|d| format!("{prefix}{d}"))
        .find(|s| luhn(s))
        .unwrap()
}

fn iban(r: &mut Lcg) -> String {
    let (cc, len) = *[("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14)]
        .get(r.below(4) as usize)
        .unwrap();
    let bban: String = if cc == "GB" || cc == "NL" {
        let bank: String = (0..4)
            .map(|_| char::from(b'A' + r.below(26) as u8))
            .collect();
        format!("{bank}{}", r.digits(len - 4))
    } else {
        r.digits(len)
    };
    let check = (2..=98)
        .map(|c| format!("{cc}{c:02}{bban}"))
        .find(|s| iban_valid(s))
        .unwrap();
    if r.below(2) == 0 {
        // Printed in groups of four.
        check
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        check
    }
}

/// (planted value, detector) positives and values that must not be detected.
fn corpus() -> (Vec<(String, &'static str)>, Vec<String>) {
    let mut r = Lcg(7);
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    for _ in 0..60 {
        let user = r.pick(&["jane.doe", "j_smith+news", "ops", "müller.k", "a.b-c"]);
        let dom = r.pick(&[
            "example.com",
            "mail.example.co.uk",
            "corp.io",
            "xn--bcher-kva.de",
        ]);
        pos.push((
            format!("{}{}@{dom}", user.replace('ü', "u"), r.below(100)),
            "email",
        ));
        pos.push((
            r.pick(&[
                "+1 415 555 ",
                "+44 20 7946 ",
                "+49 30 1234 ",
                "+33 1 42 68 ",
            ])
            .to_string()
                + &r.digits(4),
            "phone",
        ));
        pos.push((
            format!(
                "({}) {}-{}",
                200 + r.below(700),
                200 + r.below(700),
                r.digits(4)
            ),
            "phone",
        ));
        pos.push((
            format!("0{} {} {}", 20 + r.below(70), r.digits(4), r.digits(4)),
            "phone",
        ));
        let card = luhn_complete(&format!("4{}", r.digits(14)));
        let sep = r.pick(&["", " ", "-"]);
        let grouped = card
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(sep);
        pos.push((grouped.clone(), "credit_card"));
        // Luhn-invalid: last digit changed.
        let mut bad = grouped.into_bytes();
        let last = bad.len() - 1;
        bad[last] = b'0' + (bad[last] - b'0' + 1) % 10;
        neg.push(String::from_utf8(bad).unwrap());
        pos.push((
            format!(
                "{:03}-{:02}-{:04}",
                1 + r.below(665),
                1 + r.below(99),
                1 + r.below(9999)
            ),
            "ssn",
        ));
        neg.push(format!(
            "{}-{:02}-{:04}",
            r.pick(&["000", "666", "912"]),
            1 + r.below(99),
            1 + r.below(9999)
        ));
        neg.push(format!(
            "{:03}-00-{:04}",
            1 + r.below(665),
            1 + r.below(9999)
        ));
        let ib = iban(&mut r);
        pos.push((ib.clone(), "iban"));
        let mut bad: Vec<char> = ib.chars().collect();
        let i = bad.len() - 1;
        bad[i] = if bad[i] == '1' { '2' } else { '1' };
        neg.push(bad.into_iter().collect());
        pos.push((
            format!(
                "{}.{}.{}.{}",
                1 + r.below(223),
                r.below(256),
                r.below(256),
                1 + r.below(254)
            ),
            "ip",
        ));
        pos.push((
            format!(
                "2001:db8:{:x}::{:x}:{:x}",
                r.below(65535),
                r.below(65535),
                1 + r.below(65534)
            ),
            "ip",
        ));
        let token: String = (0..40)
            .map(|_| char::from(b"ABCDEFGHabcdefgh0123456789"[r.below(26) as usize]))
            .collect();
        pos.push((format!("sk-proj-{token}"), "secret"));
        pos.push((
            format!("AKIA{}", &token.to_ascii_uppercase()[..16]),
            "secret",
        ));
        pos.push((
            format!(
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ{}.{}",
                &token[..8],
                &token[..22]
            ),
            "secret",
        ));
        pos.push((format!("ghp_{}", &token[..36]), "secret"));
        neg.push(format!("{}.{}.{}", r.below(10), r.below(10), r.below(30)));
        neg.push(format!(
            "2024-{:02}-{:02}",
            1 + r.below(12),
            1 + r.below(28)
        ));
        neg.push(format!(
            "{:02}:{:02}:{:02}",
            r.below(24),
            r.below(60),
            r.below(60)
        ));
        neg.push(format!("order #{}", r.digits(6)));
        neg.push("Vec::new() and std::net::Ipv6Addr".into());
        neg.push(format!(
            "{}.{}.{}.{}",
            256 + r.below(700),
            r.below(256),
            r.below(256),
            r.below(256)
        ));
        neg.push("user at example dot com, @handle, foo@bar".into());
        neg.push("sk-short AKIA123 eyJ".into());
    }
    pos.push((
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----".into(),
        "secret",
    ));
    (pos, neg)
}

const TEMPLATES: [&str; 4] = [
    "Please contact {} about the invoice.",
    "Grüße aus 東京 — {} — danke!",
    "He said \\\"{}\\\" twice",
    "{}",
];

fn all_detectors() -> Detectors {
    Detectors::new(&Detector::ALL, &[], &[], PiiAction::Redact).unwrap()
}

#[test]
fn corpus_precision_and_recall_per_detector() {
    let d = all_detectors();
    let (pos, neg) = corpus();
    let mut stats: std::collections::BTreeMap<&str, (u32, u32, u32)> = Default::default();
    for (i, (value, kind)) in pos.iter().enumerate() {
        let text = TEMPLATES[i % TEMPLATES.len()].replace("{}", value);
        let at = text.find(value.as_str()).unwrap();
        let found = d.find(&text);
        let hit = found
            .iter()
            .any(|f| f.start == at && f.end == at + value.len() && d.kinds[f.kind].metric == *kind);
        let e = stats.entry(kind).or_default();
        if hit {
            e.0 += 1;
        } else {
            e.2 += 1;
            eprintln!("missed {kind}: {text:?} → {found:?}");
        }
        for f in found {
            let m = d.kinds[f.kind].metric;
            if !(f.start == at && f.end == at + value.len() && m == *kind) {
                stats.entry(m).or_default().1 += 1;
                eprintln!("false {m}: {:?} in {text:?}", &text[f.start..f.end]);
            }
        }
    }
    for text in &neg {
        for f in d.find(text) {
            let m = d.kinds[f.kind].metric;
            stats.entry(m).or_default().1 += 1;
            eprintln!("false {m}: {:?} in {text:?}", &text[f.start..f.end]);
        }
    }
    for (kind, (tp, fp, fnn)) in &stats {
        let precision = f64::from(*tp) / f64::from((tp + fp).max(1));
        let recall = f64::from(*tp) / f64::from((tp + fnn).max(1));
        println!("pii {kind:12} precision {precision:.3} recall {recall:.3} (tp {tp}, fp {fp}, fn {fnn})");
        assert!(precision >= 0.95, "{kind} precision {precision}");
        assert!(recall >= 0.95, "{kind} recall {recall}");
    }
    assert_eq!(stats.len(), 7);
}

fn filter(action: PiiAction, responses: bool) -> Box<dyn Filter> {
    PiiFactory::new(&PiiConfig {
        action,
        detectors: Detector::ALL.to_vec(),
        custom: vec![crate::config::CustomDetector {
            name: "employee_id".into(),
            regex: "EMP-[0-9]{6}".into(),
            action: Some(PiiAction::Redact),
        }],
        deny_list: vec!["Project Nightingale".into()],
        responses,
        hash_key: None,
    })
    .unwrap()
    .instance()
}

fn request(text: &str) -> ChatRequest {
    let mut r = ChatRequest::new(Format::OpenAi, "m");
    r.messages.push(Message::text(Role::User, text));
    let mut a = Message::new(Role::Assistant, Vec::new());
    a.tool_calls.push(ToolCall {
        id: "c".into(),
        name: "send".into(),
        arguments: r#"{"to":"bob@example.com","n":1,"note":"quote \" and é"}"#.into(),
    });
    r.messages.push(a);
    r
}

#[test]
fn actions_rewrite_text_and_keep_tool_arguments_valid_json() {
    let text = "mail jane@example.com, card 4111 1111 1111 1111, EMP-123456, project nightingale";
    let cases = [
        (
            PiiAction::Redact,
            "mail [EMAIL], card [CREDIT_CARD], [EMPLOYEE_ID], [REDACTED]",
        ),
        (
            PiiAction::Mask,
            "mail ************.com, card ***************1111, [EMPLOYEE_ID], ***************gale",
        ),
    ];
    for (action, want) in cases {
        let mut f = filter(action, false);
        let mut cx = FilterCx::default();
        let mut req = request(text);
        f.on_request(&mut req, &mut cx).unwrap();
        assert_eq!(req.messages[0].joined_text(), want);
        let args: serde_json::Value =
            serde_json::from_str(&req.messages[1].tool_calls[0].arguments).unwrap();
        assert_ne!(args["to"], "bob@example.com");
        assert_eq!(args["note"], "quote \" and é");
        assert_eq!(cx.detections["email"], 2);
    }
    let mut f = filter(PiiAction::Hash, false);
    let mut req = request("a jane@example.com b jane@example.com");
    f.on_request(&mut req, &mut FilterCx::default()).unwrap();
    let t = req.messages[0].joined_text();
    let parts: Vec<&str> = t.split(' ').collect();
    assert!(
        parts[1].starts_with("[EMAIL:") && parts[1] == parts[3],
        "{t}"
    );
    let mut f = filter(PiiAction::Block, false);
    let err = f
        .on_request(
            &mut request("key sk-proj-abcdefghijklmnopqrstuvwx"),
            &mut FilterCx::default(),
        )
        .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.contains("secret") && !err.message.contains("sk-proj"));
}

fn reversible(text: &str) -> (Box<dyn Filter>, String) {
    let mut f = filter(PiiAction::Reversible, false);
    let mut req = request(text);
    f.on_request(&mut req, &mut FilterCx::default()).unwrap();
    let masked = req.messages[0].joined_text();
    (f, masked)
}

#[test]
fn reversible_restores_non_stream_text_and_arguments() {
    let (mut f, masked) = reversible("write to jane@example.com or call +1 415 555 0134");
    assert_eq!(masked, "write to <EMAIL_1> or call <PHONE_1>");
    let mut resp = ChatResponse {
        id: "r".into(),
        model: "m".into(),
        created: 0,
        choices: vec![Choice {
            index: 0,
            text: Some("Sent to <EMAIL_1>; <EMAIL_9> is unknown".into()),
            tool_calls: vec![ToolCall {
                id: "c".into(),
                name: "send".into(),
                arguments: r#"{"to":"<EMAIL_1>","phone":"<PHONE_1>"}"#.into(),
            }],
            finish: None,
            stop_sequence: None,
        }],
        usage: None,
    };
    f.on_response(&mut resp, &mut FilterCx::default()).unwrap();
    assert_eq!(
        resp.choices[0].text.as_deref(),
        Some("Sent to jane@example.com; <EMAIL_9> is unknown")
    );
    let args: serde_json::Value =
        serde_json::from_str(&resp.choices[0].tool_calls[0].arguments).unwrap();
    assert_eq!(args["to"], "jane@example.com");
}

fn stream_through(f: &mut Box<dyn Filter>, pieces: &[&str]) -> String {
    let mut cx = FilterCx::default();
    let mut out = String::new();
    for p in pieces {
        let mut evs = vec![StreamEvent::Text {
            index: 0,
            text: p.to_string(),
        }];
        f.on_events(&mut evs, &mut cx);
        for e in evs {
            if let StreamEvent::Text { text, .. } = e {
                out.push_str(&text);
            }
        }
    }
    let mut evs = vec![StreamEvent::Done];
    f.on_events(&mut evs, &mut cx);
    f.on_end(&mut evs, &mut cx);
    for e in evs {
        if let StreamEvent::Text { text, .. } = e {
            out.push_str(&text);
        }
    }
    out
}

proptest! {
    /// A placeholder split anywhere across stream events is still restored.
    #[test]
    fn reversible_stream_restores_across_any_split(cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5)) {
        let (mut f, masked) = reversible("reach jane@example.com or 10.1.2.3 <b>today</b>");
        let reply = format!("Okay: {masked} <EMAIL_7> <b>");
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(reply.len() + 1)).collect();
        points.sort_unstable();
        points.retain(|p| reply.is_char_boundary(*p));
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(&reply[last..p]);
            last = p;
        }
        pieces.push(&reply[last..]);
        prop_assert_eq!(
            stream_through(&mut f, &pieces),
            "Okay: reach jane@example.com or 10.1.2.3 <b>today</b> <EMAIL_7> <b>"
        );
    }

    /// Output masking catches a value split across events.
    #[test]
    fn response_masking_sees_values_split_across_events(cut in 0usize..60) {
        let mut f = filter(PiiAction::Redact, true);
        let reply = "The address is jane.doe@example.com and that is all.";
        let cut = cut.min(reply.len());
        prop_assert_eq!(
            stream_through(&mut f, &[&reply[..cut], &reply[cut..]]),
            "The address is [EMAIL] and that is all."
        );
    }
}

/// Every single split point of the reply, one after another.
#[test]
fn reversible_stream_restores_at_every_split_point() {
    let (f0, masked) = reversible("reach jane@example.com or 10.1.2.3");
    drop(f0);
    let reply = format!("Ok: {masked}, <b>{masked}</b>");
    let want = "Ok: reach jane@example.com or 10.1.2.3, <b>reach jane@example.com or 10.1.2.3</b>";
    for cut in (0..=reply.len()).filter(|c| reply.is_char_boundary(*c)) {
        let (mut f, _) = reversible("reach jane@example.com or 10.1.2.3");
        assert_eq!(
            stream_through(&mut f, &[&reply[..cut], &reply[cut..]]),
            want,
            "cut {cut}"
        );
    }
}
