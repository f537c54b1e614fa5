//! Batched generation gives byte-identical outputs to generating each request alone.

use steadytext_core::models::{ModelDir, GEMMA3_270M};
use steadytext_core::{CoreError, GenerateRequest, Generator};
use steadytext_testkit::tiny_qwen3_reranker::{self, Head};

fn generator() -> Generator {
    let path = ModelDir::resolve()
        .locate(&GEMMA3_270M)
        .expect("packaged Gemma model missing: run scripts/setup");
    Generator::load(&path, 2).expect("model loads")
}

fn req(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest { prompt: prompt.into(), max_tokens, seed: 42, constraint: None }
}

/// Prompts of different lengths, so that batches mix short and long sequences.
fn prompts() -> Vec<GenerateRequest> {
    vec![
        req("The capital of France is", 16),
        req("def fibonacci(n):", 24),
        req("Once upon a time", 8),
        req("PostgreSQL is a relational database that", 20),
        req("1, 2, 3, 4,", 12),
        req("The quick brown fox", 16),
        req(&"A long prompt that repeats itself. ".repeat(40), 10),
        req("Water boils at", 6),
        // over 100 tokens: past the 64 queries from which ggml's flash attention tiles a prompt
        req(&counting(), 8),
    ]
}

/// A prompt of over 100 tokens (60 numbers, each one or two digit tokens and a separator).
fn counting() -> String {
    let numbers: Vec<String> = (1..=60).map(|i| i.to_string()).collect();
    format!("Counting: {}", numbers.join(", "))
}

#[test]
fn batches_of_2_4_8_16_match_each_request_alone() {
    let g = generator();
    let all = prompts();
    let alone: Vec<String> = all.iter().map(|r| g.generate(r).unwrap()).collect();
    assert!(alone.iter().all(|s| !s.is_empty()));
    // The prompt under test is at a different index with different neighbours in each batch.
    let batches: Vec<Vec<usize>> = vec![
        vec![0, 1],
        vec![1, 0],
        vec![2, 6],
        vec![3, 4, 5, 0],
        vec![6, 7, 1, 2],
        vec![0, 1, 2, 3, 4, 5, 6, 7],
        vec![7, 6, 5, 4, 3, 2, 1, 0],
        vec![8, 6],
        vec![0, 8, 2, 8],
        // 16 sequences in one decode step, each prompt twice
        vec![3, 0, 7, 1, 6, 2, 5, 4, 4, 5, 2, 6, 1, 7, 0, 3],
    ];
    let mut bad = Vec::new();
    for batch in batches {
        let reqs: Vec<GenerateRequest> = batch.iter().map(|&i| all[i].clone()).collect();
        let got = g.generate_batch(&reqs).unwrap();
        for (pos, &i) in batch.iter().enumerate() {
            let out = &got[pos].as_ref().unwrap().text;
            if out != &alone[i] {
                bad.push(format!("prompt {i} in batch {batch:?}: {out:?} vs alone {:?}", alone[i]));
            }
        }
    }
    assert!(bad.is_empty(), "batched outputs differ from alone:\n{}", bad.join("\n"));
}

#[test]
fn a_bad_request_fails_alone_without_failing_its_batch() {
    let g = generator();
    let reqs = vec![req("The capital of France is", 16), req(&"word ".repeat(5000), 8)];
    let got = g.generate_batch(&reqs).unwrap();
    let first = got[0].as_ref().unwrap();
    assert_eq!(first.text, g.generate(&reqs[0]).unwrap());
    assert!(first.tokens >= 1 && first.tokens <= 16, "{first:?}");
    assert!(matches!(got[1], Err(CoreError::ContextOverflow { .. })), "{:?}", got[1]);
}

#[test]
fn an_abandoned_request_stops_without_changing_its_neighbours() {
    let g = generator();
    let reqs = vec![
        req("The capital of France is", 16),
        req("def fibonacci(n):", 400),
        req("Once upon a time", 8),
    ];
    let alone: Vec<String> = [&reqs[0], &reqs[2]].iter().map(|r| g.generate(r).unwrap()).collect();
    // request 1 is abandoned once its neighbours are done: it must stop right away
    let steps = std::cell::Cell::new(0u32);
    let keep = |i: usize| {
        if i == 1 {
            steps.set(steps.get() + 1);
        }
        i != 1 || steps.get() < 20
    };
    let out = g.generate_batch_while(&reqs, &keep).unwrap();
    assert!(matches!(out[1], Err(CoreError::Abandoned)), "{:?}", out[1]);
    assert_eq!(steps.get(), 20, "checked once per step until abandoned, then never again");
    assert_eq!(out[0].as_ref().unwrap().text, alone[0]);
    assert_eq!(out[2].as_ref().unwrap().text, alone[1]);
}

/// The load-time probe that decides whether steps with one live sequence need a companion row:
/// the packaged Gemma model's single-row products (Q8_0/Q5_0 through `vec_dot`) round exactly
/// like its multi-row ones (tinyBLAS), so lone requests decode without one. (The companion row
/// itself is exercised by the long prompt of `batches_of_2_4_8_16_match_each_request_alone`,
/// which decodes past position 256.)
#[test]
fn the_kernel_probe_finds_gemma_needs_no_companion_row() {
    assert!(
        !generator().companion_always(),
        "Gemma's single-row products no longer round like multi-row ones: lone requests now \
         pay for a companion row (did llama.cpp's kernels change?)"
    );
}

/// An F32 model (the tiny Qwen3 GGUF the rerank tests write) decodes batched exactly as alone,
/// whichever way its probe decided.
#[test]
fn an_f32_model_decodes_batched_as_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-qwen3.gguf");
    tiny_qwen3_reranker::write(&path, "Tiny Qwen3", 3, Head::Logits).unwrap();
    let tiny = Generator::load(&path, 2).unwrap();
    let reqs = vec![req("abc", 12), req("hello world", 9), req("x", 15), req("a b c d", 7)];
    let alone: Vec<String> = reqs.iter().map(|r| tiny.generate(r).unwrap()).collect();
    let batched = tiny.generate_batch(&reqs).unwrap();
    for (i, got) in batched.iter().enumerate() {
        assert_eq!(got.as_ref().unwrap().text, alone[i], "request {i}");
    }
}
