//! `steadytext models import` and `steadytext embed` on the packaged all-MiniLM-L6-v2, in a
//! private model directory that links to the folder scripts/setup unpacks.

mod support;

use std::path::Path;
use std::process::Output;

const GGUF: &str = "all-MiniLM-L6-v2-f32.gguf";

/// A fresh model directory holding (a link to) the packaged MiniLM folder and nothing else.
fn model_dir() -> tempfile::TempDir {
    steadytext_testkit::model_dirs::minilm_only()
}

fn steadytext(dir: &Path, args: &[&str]) -> Output {
    support::cli::steadytext(Some(dir), args, &[])
}

fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "failed: {stderr}");
    (stdout, stderr)
}

fn parse(line: &str) -> Vec<f32> {
    let inner = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')).expect("[…] form");
    inner.split(',').map(|x| x.parse().expect("number")).collect()
}

#[test]
fn import_is_idempotent() {
    let dir = model_dir();
    let (first, _) = ok(&steadytext(dir.path(), &["models", "import"]));
    assert!(first.contains("imported into") && dir.path().join(GGUF).exists(), "{first}");
    let before = std::fs::metadata(dir.path().join(GGUF)).unwrap().modified().unwrap();
    let (second, _) = ok(&steadytext(dir.path(), &["models", "import"]));
    assert!(second.contains("already imported"), "{second}");
    assert_eq!(std::fs::metadata(dir.path().join(GGUF)).unwrap().modified().unwrap(), before);
}

#[test]
fn embed_imports_on_first_use_and_prints_pgvector_lines() {
    let dir = model_dir();
    let texts = ["This is an example sentence", "Each sentence is converted"];
    let (out, err) = ok(&steadytext(dir.path(), &["embed", texts[0], texts[1]]));
    assert!(err.contains("not imported yet") && dir.path().join(GGUF).exists(), "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let v = parse(lines[0]);
    assert_eq!(v.len(), 384);
    assert!((v[0] - 0.0677).abs() <= 1e-3 && (v[3] - 0.0793).abs() <= 1e-3, "{:?}", &v[..4]);

    // Second process: no import message, same bytes; each text alone gives its line.
    let (again, err) = ok(&steadytext(dir.path(), &["embed", texts[0], texts[1]]));
    assert!(err.is_empty(), "stderr: {err}");
    assert_eq!(again, out);
    let (alone, _) = ok(&steadytext(dir.path(), &["embed", texts[1]]));
    assert_eq!(alone.trim_end(), lines[1]);
}

#[test]
fn empty_text_is_refused() {
    let dir = model_dir();
    let out = steadytext(dir.path(), &["embed", "fine", ""]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty") && err.contains("input 1"), "{err}");
    assert!(out.stdout.is_empty(), "nothing printed on failure");
}

#[test]
fn missing_model_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = steadytext(dir.path(), &["embed", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(GGUF) && err.contains("scripts/setup"), "{err}");
}
