//! Generation on the packaged Gemma model is deterministic within one process.

use steadytext_core::models::{ModelDir, GEMMA3_270M};
use steadytext_core::{GenerateRequest, Generator};

fn generator(threads: usize) -> Generator {
    let path = ModelDir::resolve()
        .locate(&GEMMA3_270M)
        .expect("packaged Gemma model missing: run scripts/setup");
    Generator::load(&path, threads).expect("model loads")
}

/// Greedy completion of "The capital of France is" in 16 tokens on Gemma 3 270M Q4_K_M.
const GOLDEN_FRANCE_16: &str =
    " the capital of the country of France. It is the largest city in France.";

#[test]
fn same_request_twice_gives_identical_bytes() {
    let g = generator(2);
    let req = GenerateRequest {
        prompt: "The capital of France is".into(),
        max_tokens: 16,
        seed: 42,
        constraint: None,
    };
    let a = g.generate(&req).unwrap();
    let b = g.generate(&req).unwrap();
    assert_eq!(a, b);
    // Golden bytes: a change here means the model, llama.cpp or the decoding changed.
    assert_eq!(a, GOLDEN_FRANCE_16);
}

#[test]
fn max_tokens_bounds_the_output() {
    let g = generator(2);
    let short = g
        .generate(&GenerateRequest {
            prompt: "Once upon a time".into(),
            max_tokens: 1,
            seed: 42,
            constraint: None,
        })
        .unwrap();
    let long = g
        .generate(&GenerateRequest {
            prompt: "Once upon a time".into(),
            max_tokens: 12,
            seed: 42,
            constraint: None,
        })
        .unwrap();
    assert!(!short.is_empty());
    assert!(long.starts_with(&short), "greedy continuation must extend: {short:?} vs {long:?}");
    assert!(long.len() > short.len());
}

#[test]
fn prompt_too_long_for_the_context_is_a_typed_error() {
    let g = generator(1);
    let prompt = "word ".repeat(5000);
    let err = g
        .generate(&GenerateRequest { prompt, max_tokens: 16, seed: 42, constraint: None })
        .unwrap_err();
    assert!(
        matches!(err, steadytext_core::CoreError::ContextOverflow { .. }),
        "unexpected error: {err}"
    );
}
