//! PII detectors: one `RegexSet` pass says which detectors fire, then only
//! those locate their matches; validators (Luhn, mod-97, SSN ranges, address
//! parsing) drop look-alikes. Literal deny-lists use one Aho-Corasick automaton.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet};

use crate::config::{CustomDetector, Detector, PiiAction};

/// What a match is, for labels, metrics and per-detector actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// Upper-case label used in replacements (`EMAIL`, `EMPLOYEE_ID`).
    pub label: String,
    /// Metric label (`email`, `custom`).
    pub metric: &'static str,
    pub action: PiiAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub kind: usize,
}

#[derive(Clone, Copy)]
enum Check {
    None,
    Luhn,
    Mod97,
    Ssn,
    Ipv6,
    Phone,
}

/// Literals the secret detectors need. Text with none of them and no
/// [`trigger_byte`] skips the built-in set (most prose). Each is at least
/// three bytes, so the automaton's SIMD (Teddy) prefilter fingerprints
/// three bytes and rarely stops on ordinary words.
const TRIGGERS: &[&str] = &[
    "sk-",
    "AKIA",
    "ASIA",
    "eyJ",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "AIza",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "k_live_",
    "k_test_",
    "-----BEGIN",
];

/// Whether `text` has a byte every other built-in detector needs: a digit
/// (numbers, IPv4, IBAN), `@` (email) or `:` (IPv6). Branch-free per block
/// so it vectorises.
fn trigger_byte(text: &str) -> bool {
    text.as_bytes().chunks(64).any(|block| {
        block.iter().fold(false, |any, &b| {
            any | b.is_ascii_digit() | (b == b'@') | (b == b':')
        })
    })
}

pub struct Detectors {
    /// The built-in detectors, then the user's, each an index into `regexes`.
    set: RegexSet,
    custom: RegexSet,
    /// Which regexes are built-in (covered by the trigger prefilter).
    builtin: usize,
    triggers: AhoCorasick,
    regexes: Vec<(Regex, Check, usize)>,
    deny: Option<(AhoCorasick, usize)>,
    pub kinds: Vec<Kind>,
}

/// Built-in patterns use ASCII `\b` and `\d`: the values they find are
/// ASCII, and a Unicode word boundary makes the lazy DFA give up at the
/// first non-ASCII byte of the text (about 60x slower on accented prose).
fn ascii(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)").replace(r"\d", "[0-9]")
}

fn patterns(d: Detector) -> (&'static str, &'static str, Vec<(&'static str, Check)>) {
    match d {
        Detector::Email => (
            "EMAIL",
            "email",
            vec![(
                r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
                Check::None,
            )],
        ),
        Detector::Phone => (
            "PHONE",
            "phone",
            vec![
                (
                    r"\+[1-9]\d{0,2}(?:[ .\-]?\(?\d{1,4}\)?){2,5}\d",
                    Check::Phone,
                ),
                (
                    r"(?:\(\d{3}\)\s?|\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b",
                    Check::Phone,
                ),
                (r"\b0\d{2,4}[ \-]?\d{3,4}[ \-]?\d{3,4}\b", Check::Phone),
            ],
        ),
        Detector::CreditCard => (
            "CREDIT_CARD",
            "credit_card",
            vec![(r"\b(?:\d[ \-]?){12,18}\d\b", Check::Luhn)],
        ),
        Detector::Ssn => (
            "SSN",
            "ssn",
            vec![(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b", Check::Ssn)],
        ),
        Detector::Iban => (
            "IBAN",
            "iban",
            vec![(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", Check::Mod97)],
        ),
        Detector::Ip => (
            "IP",
            "ip",
            vec![
                (
                    r"\b(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b",
                    Check::None,
                ),
                (
                    r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})?",
                    Check::Ipv6,
                ),
            ],
        ),
        Detector::Secret => (
            "SECRET",
            "secret",
            vec![
                (
                    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
                    Check::None,
                ),
                (
                    r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}",
                    Check::None,
                ),
                (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", Check::None),
                (
                    r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
                    Check::None,
                ),
                (r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", Check::None),
                (r"\bAIza[0-9A-Za-z_\-]{35}\b", Check::None),
                (r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", Check::None),
                (r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}", Check::None),
            ],
        ),
    }
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

pub fn luhn(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

pub fn iban_valid(s: &str) -> bool {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let (head, tail) = s.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// US SSN: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub fn ssn_valid(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Not the tail or head of a longer group of numbers (a card or account
/// number that failed its own checksum is not a phone number).
fn standalone(text: &str, start: usize, end: usize) -> bool {
    let before: Vec<char> = text[..start].chars().rev().take(2).collect();
    let after: Vec<char> = text[end..].chars().take(2).collect();
    let joined = |c: &[char]| match c {
        [] => false,
        [a, ..] if a.is_alphanumeric() => true,
        [' ' | '-' | '.', b, ..] => b.is_ascii_digit(),
        _ => false,
    };
    !joined(&before) && !joined(&after)
}

/// A real IPv6 address standing alone, not `Vec::new` or a clock time.
fn ipv6_like(text: &str, start: usize, end: usize) -> bool {
    let s = &text[start..end];
    let hex = s.bytes().filter(u8::is_ascii_hexdigit).count();
    let alone = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
    hex >= 4
        && alone(text[..start].chars().next_back())
        && alone(text[end..].chars().next())
        && s.parse::<std::net::Ipv6Addr>().is_ok()
}

impl Detectors {
    pub fn new(
        enabled: &[Detector],
        custom: &[CustomDetector],
        deny: &[String],
        action: PiiAction,
    ) -> Result<Detectors, String> {
        let mut kinds = Vec::new();
        let mut sources = Vec::new();
        let mut custom_sources = Vec::new();
        let mut regexes = Vec::new();
        for d in Detector::ALL.iter().filter(|d| enabled.contains(d)) {
            let (label, metric, pats) = patterns(*d);
            kinds.push(Kind {
                label: label.to_string(),
                metric,
                action,
            });
            for (p, check) in pats {
                let p = ascii(p);
                let re = Regex::new(&p).map_err(|e| format!("{label}: {e}"))?;
                sources.push(p);
                regexes.push((re, check, kinds.len() - 1));
            }
        }
        let builtin = regexes.len();
        for c in custom {
            let re =
                Regex::new(&c.regex).map_err(|e| format!("custom detector '{}': {e}", c.name))?;
            kinds.push(Kind {
                label: c.name.to_ascii_uppercase(),
                metric: "custom",
                action: c.action.unwrap_or(action),
            });
            custom_sources.push(c.regex.clone());
            regexes.push((re, Check::None, kinds.len() - 1));
        }
        let set = RegexSet::new(&sources).map_err(|e| e.to_string())?;
        // Apart: a Unicode `\b` in a user's pattern slows only its own set.
        let custom = RegexSet::new(&custom_sources).map_err(|e| e.to_string())?;
        let deny = if deny.is_empty() {
            None
        } else {
            kinds.push(Kind {
                label: "REDACTED".into(),
                metric: "deny_list",
                action,
            });
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(deny)
                .map_err(|e| e.to_string())?;
            Some((ac, kinds.len() - 1))
        };
        // Leftmost-first: the packed SIMD searcher serves only leftmost kinds.
        let triggers = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostFirst)
            .build(TRIGGERS)
            .map_err(|e| e.to_string())?;
        Ok(Detectors {
            set,
            custom,
            builtin,
            triggers,
            regexes,
            deny,
            kinds,
        })
    }

    /// False only when no built-in detector can match `text`.
    fn may_match_builtin(&self, text: &str) -> bool {
        trigger_byte(text) || self.triggers.is_match(text)
    }

    /// Non-overlapping validated matches, in text order.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let mut out = Vec::new();
        let builtin = self
            .may_match_builtin(text)
            .then(|| self.set.matches(text))
            .into_iter()
            .flat_map(|m| m.into_iter());
        let custom = (!self.custom.is_empty())
            .then(|| self.custom.matches(text))
            .into_iter()
            .flat_map(|m| m.into_iter())
            .map(|i| i + self.builtin);
        for i in builtin.chain(custom) {
            let (re, check, kind) = &self.regexes[i];
            for m in re.find_iter(text) {
                let s = m.as_str();
                let ok = match check {
                    Check::None => true,
                    Check::Luhn => luhn(s),
                    Check::Mod97 => iban_valid(s),
                    Check::Ssn => ssn_valid(s),
                    Check::Ipv6 => ipv6_like(text, m.start(), m.end()),
                    Check::Phone => {
                        (7..=15).contains(&digits(s).len()) && standalone(text, m.start(), m.end())
                    }
                };
                if ok {
                    out.push(Found {
                        start: m.start(),
                        end: m.end(),
                        kind: *kind,
                    });
                }
            }
        }
        if let Some((ac, kind)) = &self.deny {
            for m in ac.find_iter(text) {
                out.push(Found {
                    start: m.start(),
                    end: m.end(),
                    kind: *kind,
                });
            }
        }
        // Leftmost first; on a tie the longer match, then the earlier detector.
        out.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(b.end.cmp(&a.end))
                .then(a.kind.cmp(&b.kind))
        });
        let mut kept: Vec<Found> = Vec::with_capacity(out.len());
        for f in out {
            if kept.last().is_none_or(|k| f.start >= k.end) {
                kept.push(f);
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;

    static ALL: LazyLock<Detectors> =
        LazyLock::new(|| Detectors::new(&Detector::ALL, &[], &[], PiiAction::Redact).unwrap());

    /// Pieces of every secret shape and near misses, with no digit, `@` or
    /// `:`, so only the literal triggers can let the text through.
    const FRAGMENTS: &[&str] = &[
        "sk-",
        "sk-ant-",
        "AKIA",
        "ASIA",
        "eyJ",
        "ghp_",
        "gho_",
        "ghs_",
        "AIza",
        "xoxb-",
        "sk_live_",
        "rk_test_",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----",
        "abcdefghijklmnopqrst",
        "ABCDEFGHIJKLMNOPQRST",
        "_-",
        ".",
        " ",
        "\n",
        "é",
    ];

    fn builtin_match(text: &str) -> bool {
        ALL.regexes[..ALL.builtin]
            .iter()
            .any(|(re, _, _)| re.is_match(text))
    }

    #[test]
    fn digit_free_secrets_pass_the_prefilter() {
        let a = "abcdefghijklmnopqrst";
        let samples = [
            format!("key sk-{a}"),
            format!("AKIA{} end", "ABCDEFGHIJKLMNOP"),
            format!("eyJ{a}.eyJ{a}.{a}"),
            format!("ghp_{a}{a}"),
            format!("AIza{a}{}", &a[..15]),
            format!("xoxb-{a}"),
            format!("rk_test_{a}"),
            "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----".to_string(),
        ];
        for s in samples {
            assert!(builtin_match(&s), "sample should match: {s}");
            assert!(ALL.may_match_builtin(&s), "prefilter skipped: {s}");
        }
        assert!(!ALL.may_match_builtin("plain prose with no secrets, well-kept"));
    }

    #[test]
    fn accented_text_and_custom_patterns() {
        let text = "Grüße — écrivez à jane@example.com, carte 4111 1111 1111 1111 ñ, EMP-1234.";
        let kinds = |d: &Detectors| -> Vec<String> {
            d.find(text)
                .iter()
                .map(|f| d.kinds[f.kind].label.clone())
                .collect()
        };
        assert_eq!(kinds(&ALL), ["EMAIL", "CREDIT_CARD"]);
        let custom = CustomDetector {
            name: "employee".into(),
            regex: r"\bEMP-\d+\b".into(),
            action: None,
        };
        let d = Detectors::new(&Detector::ALL, &[custom], &[], PiiAction::Redact).unwrap();
        assert_eq!(kinds(&d), ["EMAIL", "CREDIT_CARD", "EMPLOYEE"]);
    }

    proptest! {
        /// The prefilter never skips text that a built-in regex matches.
        #[test]
        fn prefilter_never_hides_a_builtin_match(
            pieces in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24)
        ) {
            let text = pieces.concat();
            prop_assert!(!builtin_match(&text) || ALL.may_match_builtin(&text), "{text:?}");
        }
    }
}
