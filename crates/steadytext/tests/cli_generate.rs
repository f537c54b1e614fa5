//! `steadytext generate` prints the same bytes from independent, daemon-free processes.

mod support;

fn generate(args: &[&str]) -> std::process::Output {
    support::cli::steadytext(None, &[&["generate"], args].concat(), &[])
}

#[test]
fn two_fresh_processes_print_identical_bytes() {
    let args = ["The capital of France is", "--max-tokens", "16"];
    let first = generate(&args);
    assert!(first.status.success(), "stderr: {}", String::from_utf8_lossy(&first.stderr));
    let second = generate(&args);
    assert!(second.status.success(), "stderr: {}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(first.stdout, second.stdout);
    let text = String::from_utf8(first.stdout).expect("utf-8 output");
    assert!(text.ends_with('\n') && text.contains("France"), "unexpected completion: {text:?}");
}

#[test]
fn thread_count_does_not_change_the_output() {
    let one = generate(&["The capital of France is", "--max-tokens", "16", "--threads", "1"]);
    let two = generate(&["The capital of France is", "--max-tokens", "16", "--threads", "2"]);
    assert!(one.status.success() && two.status.success());
    assert_eq!(one.stdout, two.stdout);
}

#[test]
fn thread_count_does_not_change_a_long_context_output() {
    // About 600 prompt tokens: attention then spans more than 512 cached positions, where
    // ggml's CPU flash attention may split the KV range across threads (one range on 1 thread,
    // two on 2). Four decode steps take that path as well as more would. 1 against 3 threads,
    // an uneven split, is generate_determinism.rs's (in one process: 3 threads on a 2-core
    // machine cost 20 s here, the third waiting for a core at every barrier); this test checks
    // that `--threads` reaches the engine with the same invariance.
    let prompt =
        format!("{}In summary,", "The history of the city is long and complicated. ".repeat(60));
    let one = generate(&[&prompt, "--max-tokens", "4", "--threads", "1"]);
    let two = generate(&[&prompt, "--max-tokens", "4", "--threads", "2"]);
    assert!(one.status.success() && two.status.success());
    assert!(!one.stdout.is_empty());
    assert_eq!(one.stdout, two.stdout);
}

#[test]
fn out_of_range_max_tokens_is_refused() {
    for bad in ["0", "-3", "4097"] {
        let flag = format!("--max-tokens={bad}");
        let out = generate(&["x", &flag]);
        assert!(!out.status.success(), "max_tokens {bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("max_tokens must be"), "max_tokens {bad}: {err}");
    }
}

#[test]
fn missing_model_names_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        support::cli::steadytext(Some(dir.path()), &["generate", "x", "--max-tokens", "4"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gemma-3-270m-q4_k_m.gguf") && err.contains("scripts/setup"), "{err}");
}
