//! `steadytext generate-json`, `generate-regex` and `generate-choice` from fresh processes.

mod support;

use std::process::Output;

fn steadytext(args: &[&str]) -> Output {
    support::cli::steadytext(None, args, &[])
}

#[test]
fn generate_choice_prints_exactly_one_choice() {
    let args = [
        "generate-choice",
        "Is the sky blue? Answer:",
        "--choice",
        "yes",
        "--choice",
        "no",
        "--max-tokens",
        "4",
    ];
    let out = steadytext(&args);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    assert!(text == "yes\n" || text == "no\n", "not one of the choices: {text:?}");
}

#[test]
fn generate_json_prints_bare_json_of_the_schema() {
    let schema = r#"{"enum": ["red", "green", "blue"]}"#;
    let out =
        steadytext(&["generate-json", "Pick a color:", "--schema", schema, "--max-tokens", "8"]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    let value: serde_json::Value = serde_json::from_str(text.trim_end_matches('\n')).unwrap();
    assert!(["red", "green", "blue"].contains(&value.as_str().unwrap_or("")), "{text:?}");
}

#[test]
fn an_invalid_regex_fails_before_loading_the_model() {
    // An empty model directory: the refusal must not depend on (or mention) the model.
    let dir = tempfile::tempdir().unwrap();
    let out = support::cli::steadytext(
        Some(dir.path()),
        &["generate-regex", "x", "--pattern", "(ab"],
        &[],
    );
    assert!(!out.status.success(), "an invalid regex was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid regex") && err.contains("unclosed group"), "{err}");
    assert!(!err.contains("gguf"), "the model was looked for: {err}");
}

#[test]
fn invalid_choices_and_schemas_are_refused() {
    let dup = steadytext(&["generate-choice", "x", "--choice", "a", "--choice", "a"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("invalid choices"));
    let bad = steadytext(&["generate-json", "x", "--schema", "[1, 2]"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid JSON schema"));
    let not_json = steadytext(&["generate-json", "x", "--schema", "{nope"]);
    assert!(!not_json.status.success());
    assert!(String::from_utf8_lossy(&not_json.stderr).contains("--schema is not valid JSON"));
}
