//! `steadytext rerank`: the embedding-cosine fallback on the packaged all-MiniLM-L6-v2 (and
//! that it says so), a cross-encoder given by path (a tiny generated GGUF), typed input errors.

mod support;

use std::path::Path;
use std::process::Output;

/// A fresh model directory holding (a link to) the packaged MiniLM folder and nothing else.
fn model_dir() -> tempfile::TempDir {
    steadytext_testkit::model_dirs::minilm_only()
}

fn steadytext(dir: &Path, args: &[&str]) -> Output {
    support::cli::steadytext(Some(dir), args, &[("STEADYTEXT_THREADS", "2")])
}

/// The method line and the `(score, document)` lines of a successful run.
fn parse(out: &Output) -> (String, Vec<(f64, String)>) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines = stdout.lines();
    let method = lines.next().expect("a method line").to_string();
    let rows = lines
        .map(|l| {
            let (s, d) = l.split_once('\t').expect("score<TAB>document");
            (s.parse().expect("a score"), d.to_string())
        })
        .collect();
    (method, rows)
}

fn assert_descending(rows: &[(f64, String)]) {
    for w in rows.windows(2) {
        assert!(w[0].0 >= w[1].0, "not ordered by score: {rows:?}");
    }
}

#[test]
fn rerank_falls_back_to_embedding_cosine_and_says_so() {
    let dir = model_dir();
    let docs = [
        "The stock market closed lower on Tuesday after weak earnings reports.",
        "Mix flour, water, yeast and salt, let the dough rise, then bake it in a hot oven.",
        "Penguins live in the southern hemisphere and cannot fly.",
    ];
    let mut args = vec!["rerank", "--query", "How do I bake bread at home?"];
    args.extend(docs);
    let (method, rows) = parse(&steadytext(dir.path(), &args));
    assert_eq!(method, "# method: embedding-cosine (all-minilm-l6-v2)");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].1, docs[1], "{rows:?}");
    assert_descending(&rows);
}

#[test]
fn rerank_uses_a_cross_encoder_given_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    steadytext_testkit::tiny_cross_encoder::write(&model, 7).unwrap();
    let args = [
        "rerank",
        "--model",
        model.to_str().unwrap(),
        "--query",
        "capital of france",
        "paris is the capital of france",
        "the cat sat on the mat",
        "berlin is a city in germany",
    ];
    let (method, rows) = parse(&steadytext(dir.path(), &args));
    assert_eq!(method, "# method: cross-encoder (tiny.gguf)");
    assert_eq!(rows.len(), 3);
    assert_descending(&rows);
    // Same request, same output, byte for byte.
    let again = steadytext(dir.path(), &args);
    assert_eq!(again.stdout, steadytext(dir.path(), &args).stdout);
}

#[test]
fn rerank_refuses_an_empty_query() {
    let dir = model_dir();
    let out = steadytext(dir.path(), &["rerank", "--query", " ", "a document"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rerank query is empty"), "{stderr}");
}

#[test]
fn a_configured_reranker_that_is_missing_is_an_error_not_a_fallback() {
    let dir = model_dir();
    let out = support::cli::steadytext(
        Some(dir.path()),
        &["rerank", "--query", "bread", "a document"],
        &[("STEADYTEXT_RERANK_MODEL", "qwen3-reranker-4b")],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("steadytext models fetch qwen3-reranker-4b --allow-download"),
        "{stderr}"
    );
}
