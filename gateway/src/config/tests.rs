use std::collections::HashMap;

use super::*;
use crate::metrics::Metrics;

fn src(text: &str) -> Source {
    Source {
        name: "test.yaml".into(),
        text: text.into(),
    }
}

fn compile_text(text: &str) -> Result<crate::snapshot::Snapshot, ConfigError> {
    // Appended, so line numbers in messages stay those of `text`.
    let with_auth;
    let text = if text.contains("auth:") {
        text
    } else {
        with_auth = format!("{text}\nauth: none\n");
        &with_auth
    };
    let s = src(text);
    let raw = s.parse()?;
    compile(&raw, &s, &HashMap::new(), &Metrics::new().unwrap())
}

#[test]
fn unknown_field_names_file_line_path_and_allowed() {
    let e = compile_text("models:\n  gpt:\n    targts: []\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("test.yaml:3:"), "{e}");
    assert!(e.contains("models.gpt"), "{e}");
    assert!(e.contains("unknown field `targts`"), "{e}");
    assert!(e.contains("targets"), "{e}");
}

#[test]
fn collects_every_semantic_problem_with_lines() {
    let text = "server:\n  listen: nowhere\nproviders:\n  p:\n    kind: openai_compatible\n    base_url: ftp://x\nmodels:\n  a:\n    targets:\n      - { provider: ghost }\n  b:\n    targets: []\n";
    let e = compile_text(text).err().unwrap();
    let all = e.to_string();
    assert_eq!(e.problems.len(), 4, "{all}");
    assert!(all.contains("test.yaml:2:3: server.listen"), "{all}");
    assert!(all.contains("test.yaml:6:5: providers.p.base_url"), "{all}");
    assert!(
        all.contains("unknown provider \"ghost\" (known: p)"),
        "{all}"
    );
    assert!(all.contains("test.yaml:12:5: models.b.targets"), "{all}");
}

#[test]
fn literal_secrets_are_rejected() {
    let e = compile_text(
        "providers:\n  o:\n    kind: openai\n    base_url: https://x/v1\n    api_key: sk-123\n",
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("${OPENAI_API_KEY}"), "{e}");
    assert!(!e.to_string().contains("sk-123"), "{e}");
}

#[test]
fn missing_key_variable_makes_models_unavailable_not_fatal() {
    let text = "providers:\n  o:\n    kind: openai\n    base_url: https://x/v1\n    api_key: ${SLUICE_TEST_SURELY_UNSET}\nmodels:\n  m:\n    targets: [ { provider: o } ]\n";
    let snap = compile_text(text).unwrap();
    assert!(snap.unavailable["m"].contains("SLUICE_TEST_SURELY_UNSET"));
}

#[test]
fn provider_kind_rules_and_unsupported_policies_are_errors() {
    let e = compile_text("providers:\n  a:\n    kind: anthropic\n    base_url: https://x\n  z:\n    kind: azure\n    base_url: https://r.openai.azure.com\n    api_key: ${K}\n  v:\n    kind: openai_compatible\n    base_url: http://v/v1\n    api_version: x\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("providers.a.api_key: kind 'anthropic' needs api_key"),
        "{e}"
    );
    assert!(
        e.contains("providers.z.api_version: kind 'azure' needs api_version"),
        "{e}"
    );
    assert!(e.contains("providers.v.api_version: only kinds"), "{e}");
    let e = compile_text("providers:\n  g:\n    kind: gemini\n    api_key: ${K}\nmodels:\n  m:\n    targets: [ { provider: g, model: \"a/../b?x\" } ]\n")
        .err()
        .unwrap();
    assert!(e.to_string().contains("goes into the URL"), "{e}");
    let e = compile_text("models:\n  m:\n    balance: fastest\n    targets: []\n")
        .err()
        .unwrap();
    assert!(e.to_string().contains("least_connections"), "{e}");
}

#[test]
fn bad_units_explain_themselves() {
    let e = compile_text("server:\n  max_request_body: 10XB\n")
        .err()
        .unwrap();
    assert!(e.to_string().contains("MiB"), "{e}");
    let e = compile_text("providers:\n  p:\n    kind: mock\n    timeouts: { connect: 5 }\n")
        .err()
        .unwrap();
    assert!(e.to_string().contains("needs a unit"), "{e}");
}

#[test]
fn every_shipped_config_validates() {
    // What conf/governance.yaml reads from the environment.
    for var in ["SLUICE_ADMIN_TOKEN", "ACME_APP_KEY"] {
        if std::env::var(var).is_err() {
            std::env::set_var(var, "example-value-for-the-config-test");
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "prices.yaml") {
            // A price table, not a config: it must load as one.
            crate::govern::budget::Prices::new(&Default::default()).unwrap();
        } else if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = compile_text(&text) {
                panic!("{}: {e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 1);
    compile_text(EMBEDDED_DEFAULT).unwrap();
}
