//! Batched generation gives byte-identical outputs to generating each request alone.

use serde_json::json;
use steadytext_core::{Caller, Constraint, CoreError, GenerateRequest, Generation, Generator};
use steadytext_testkit::tiny_qwen3_reranker::{self, Head};

#[path = "support/logit_digest.rs"]
mod logit_digest;

/// The test binary's one Gemma generator (tests run one at a time: .cargo/config.toml).
fn generator() -> &'static Generator {
    steadytext_testkit::gemma::shared()
}

fn req(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        max_tokens,
        seed: 42,
        constraint: None,
        special_tokens: false,
    }
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

/// The caller of one request in a continuous batch: its index, the step from which it stops
/// wanting its result (if any), and the text pieces it was handed.
struct Probe<'s> {
    index: usize,
    step: &'s std::cell::Cell<usize>,
    abandon_at: Option<usize>,
    pieces: String,
    /// The digest of every logit its tokens were chosen from ([`logit_digest`]).
    digest: u64,
}

impl Caller for Probe<'_> {
    fn wanted(&self) -> bool {
        self.abandon_at.is_none_or(|at| self.step.get() < at)
    }

    fn piece(&mut self, text: &str) {
        self.pieces.push_str(text);
    }

    fn logits(&mut self, logits: &[f32]) {
        logit_digest::fold(&mut self.digest, logits);
    }
}

/// Requests of every kind for the continuous batch: short and long prompts, short and long
/// generations, free and constrained; two of them decode past position 256 (a 280-token prompt,
/// and a 215-token prompt whose 60 generated tokens cross position 256 at about step 41), where a
/// sequence left alone needs its companion row. (The long generation was a 300-token story once:
/// the same crossing, five times the decode steps.)
fn mixed() -> Vec<GenerateRequest> {
    let json = Constraint::Json(json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 10}, "ok": {"type": "boolean"}},
        "required": ["name", "ok"], "additionalProperties": false
    }));
    vec![
        req(
            &format!("{}Once upon a time", "The sea was calm and the night was long. ".repeat(21)),
            60,
        ),
        req("Water boils at", 6),
        req(&"A long prompt that repeats itself. ".repeat(40), 10),
        GenerateRequest { constraint: Some(json), ..req("A person as JSON:", 40) },
        GenerateRequest {
            constraint: Some(Constraint::Regex("[0-9]{3}-[0-9]{4}".into())),
            ..req("Call me at", 16)
        },
        GenerateRequest {
            constraint: Some(Constraint::Choice(vec!["yes".into(), "no".into()])),
            ..req("Is the sky blue? Answer:", 8)
        },
        req("The capital of France is", 16),
        req(&counting(), 8),
        req("def fibonacci(n):", 24),
    ]
}

/// A request's result text, the pieces it streamed and the digest of its logits.
type Outcome = (Result<String, CoreError>, String, u64);

/// Runs `reqs` through one long-lived [`steadytext_core::DecodeBatch`] of `capacity` streams:
/// request `i` asks to join at step `joins[i]` (it waits while the batch is full, and joins
/// only once an earlier one has joined), and stops wanting its result from step
/// `abandon[i]`. Returns each request's result and streamed pieces, and the largest number of
/// sequences decoded in one step.
fn continuous(
    g: &Generator,
    reqs: &[GenerateRequest],
    capacity: usize,
    joins: &[usize],
    abandon: &[Option<usize>],
) -> (Vec<Outcome>, usize) {
    let step = std::cell::Cell::new(0usize);
    let mut batch = g.decode_batch(capacity).unwrap();
    let mut out: Vec<Option<Outcome>> = (0..reqs.len()).map(|_| None).collect();
    let mut next = 0;
    let mut widest = 0;
    let mut record = |finished: Vec<(Probe, Result<Generation, CoreError>)>| {
        for (probe, result) in finished {
            out[probe.index] = Some((result.map(|g| g.text), probe.pieces, probe.digest));
        }
    };
    while next < reqs.len() || !batch.is_empty() {
        while next < reqs.len() && joins[next] <= step.get() && !batch.is_full() {
            let probe = Probe {
                index: next,
                step: &step,
                abandon_at: abandon[next],
                pieces: String::new(),
                digest: logit_digest::EMPTY,
            };
            record(batch.admit(&reqs[next], probe).into_iter().collect());
            next += 1;
        }
        widest = widest.max(batch.len());
        record(batch.step());
        step.set(step.get() + 1);
    }
    (out.into_iter().map(|o| o.expect("every request finished")).collect(), widest)
}

#[test]
fn requests_joining_and_leaving_at_any_step_decode_as_alone() {
    let g = generator();
    let reqs = mixed();
    let alone: Vec<(String, u64)> = reqs.iter().map(|r| logit_digest::alone(g, r)).collect();
    // (capacity, join step of each request): requests join while others are mid-decode, wait
    // for a full batch to make room, and leave at different lengths; the last one joins the
    // long generation past its position 256, after it decoded alone for a while
    let schedules: [(usize, [usize; 9]); 3] = [
        (4, [0, 0, 2, 5, 5, 9, 20, 50, 51]),
        (2, [0, 3, 3, 3, 10, 10, 10, 30, 52]),
        (9, [7, 0, 0, 1, 1, 2, 2, 3, 3]),
    ];
    let mut bad = Vec::new();
    for (capacity, joins) in schedules {
        let (got, widest) = continuous(g, &reqs, capacity, &joins, &[None; 9]);
        assert!(
            widest >= capacity.min(4),
            "capacity {capacity}: at most {widest} decoded together"
        );
        for (i, (result, pieces, digest)) in got.iter().enumerate() {
            let text = result.as_ref().unwrap();
            if (text, *digest) != (&alone[i].0, alone[i].1) {
                bad.push(format!(
                    "request {i}, capacity {capacity}, joins {joins:?}: {text:?} (logits \
                     {digest:016x}) vs alone {:?} ({:016x})",
                    alone[i].0, alone[i].1
                ));
            }
            assert_eq!(pieces, text, "the streamed pieces of request {i} make up its text");
        }
    }
    assert!(bad.is_empty(), "continuous outputs differ from alone:\n{}", bad.join("\n"));
}

#[test]
fn an_abandoned_sequence_leaves_its_stream_to_the_next_request() {
    let g = generator();
    let reqs = vec![
        req("Once upon a time", 400),
        req("The capital of France is", 16),
        req("def fibonacci(n):", 24),
        req("PostgreSQL is a relational database that", 20),
    ];
    let alone: Vec<String> = reqs[1..].iter().map(|r| g.generate(r).unwrap()).collect();
    // capacity 2: the long request is stopped at step 30; requests 2 and 3 each wait for a free
    // stream (request 1 ending, request 0 stopped) and decode in a reused one
    let (got, _) = continuous(g, &reqs, 2, &[0, 0, 1, 1], &[Some(30), None, None, None]);
    assert!(matches!(got[0].0, Err(CoreError::Abandoned)), "{:?}", got[0].0);
    // stopped at step 30: at most 30 tokens of text were streamed (400 would be ~300 words)
    let words = got[0].1.split_whitespace().count();
    assert!((1..=30).contains(&words), "stopped early: {:?}", got[0].1);
    for i in 1..4 {
        assert_eq!(got[i].0.as_ref().unwrap(), &alone[i - 1], "request {i}");
    }
}

/// The caller of one request in [`a_long_prompt_fills_a_chunk_per_step_beside_running_generations`]:
/// notes the step of every piece it is handed.
struct StepLog<'s> {
    index: usize,
    step: &'s std::cell::Cell<usize>,
    log: &'s std::cell::RefCell<Vec<(usize, usize)>>,
    pieces: String,
}

impl Caller for StepLog<'_> {
    fn wanted(&self) -> bool {
        true
    }

    fn piece(&mut self, text: &str) {
        self.log.borrow_mut().push((self.index, self.step.get()));
        self.pieces.push_str(text);
    }
}

/// A prompt of over 1 200 tokens (three chunks) arriving while two generations run is prefilled
/// a chunk per step: the running ones get a token at every step meanwhile, the long one's first
/// token comes two steps after it arrived at the earliest, and every output is the one decoded
/// alone (whole prefill), whichever step the prompt arrived at. A prompt of 512 + 1 tokens
/// arrives with it and waits its turn to fill; its last chunk, one token past position 256,
/// takes the companion row of the filling stream.
#[test]
fn a_long_prompt_fills_a_chunk_per_step_beside_running_generations() {
    let g = generator();
    let long = "The history of the city is long and complicated. ".repeat(125);
    let five_one_three = (400..600)
        .map(|n| format!("Numbers:{}", " a".repeat(n)))
        .find(|p| g.count_prompt_tokens(p, false) == 513)
        .expect("some count of words makes 513 tokens");
    let reqs = [
        req("Once upon a time", 30),
        req("def fibonacci(n):", 30),
        req(&long, 8),
        req(&five_one_three, 6),
    ];
    assert!(g.count_prompt_tokens(&long, false) > 1024, "three chunks");
    let alone: Vec<String> = reqs.iter().map(|r| g.generate(r).unwrap()).collect();
    for arrives in [0usize, 3, 9] {
        let step = std::cell::Cell::new(0usize);
        let log = std::cell::RefCell::new(Vec::new());
        let mut batch = g.decode_batch(4).unwrap();
        let mut out: Vec<Option<String>> = vec![None; 4];
        let caller = |index| StepLog { index, step: &step, log: &log, pieces: String::new() };
        let mut record = |finished: Vec<(StepLog, Result<Generation, CoreError>)>| {
            for (c, result) in finished {
                assert_eq!(result.unwrap().text, c.pieces, "request {}", c.index);
                out[c.index] = Some(c.pieces);
            }
        };
        for (i, r) in reqs.iter().enumerate().take(2) {
            record(batch.admit(r, caller(i)).into_iter().collect());
        }
        let mut admitted = false;
        while !admitted || !batch.is_empty() {
            if !admitted && step.get() == arrives {
                for (i, r) in reqs.iter().enumerate().skip(2) {
                    record(batch.admit(r, caller(i)).into_iter().collect());
                }
                admitted = true;
            }
            record(batch.step());
            step.set(step.get() + 1);
        }
        for (i, text) in out.iter().enumerate() {
            assert_eq!(
                text.as_deref(),
                Some(alone[i].as_str()),
                "request {i}, arriving at {arrives}"
            );
        }
        let log = log.into_inner();
        let first_long = log.iter().find(|(i, _)| *i == 2).map(|&(_, s)| s).expect("a piece");
        assert!(first_long >= arrives + 2, "first token of the long prompt at step {first_long}");
        // the running generations were not stopped while it filled: a piece at every step of it
        // (as long as they were running; a piece may be empty of text only mid-character)
        for i in 0..2 {
            let last = log.iter().filter(|(j, _)| *j == i).map(|&(_, s)| s).max().unwrap();
            for s in arrives..first_long.min(last) {
                assert!(
                    log.iter().any(|&(j, t)| j == i && t == s),
                    "request {i} had no piece at step {s} while the long prompt filled"
                );
            }
        }
    }
}

#[test]
fn short_prompts_of_every_length_prefill_together_as_alone() {
    // 13 prompts of 41 to 63 tokens admitted at once: their heads (all but the last token)
    // exceed one 512-token call, so they are prefilled in two calls, and lengths differ, so
    // llama.cpp cuts each call into several micro-batches; the logits match alone bit for bit
    let g = generator();
    let words = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let reqs: Vec<GenerateRequest> = (0..13)
        .map(|i| {
            let tail = "x ".repeat(i).trim_end().to_owned();
            req(&format!("Summarise: {} {tail}", words(17 + i % 3)), 4 + i as u32 % 3)
        })
        .collect();
    let lengths: Vec<u32> = reqs.iter().map(|r| g.count_prompt_tokens(&r.prompt, false)).collect();
    assert!(lengths.iter().all(|n| (40..64).contains(n)), "{lengths:?}");
    let heads: u32 = lengths.iter().map(|n| n - 1).sum();
    assert!(heads > 512, "{heads} head tokens fit one call");
    let alone: Vec<(String, u64)> = reqs.iter().map(|r| logit_digest::alone(g, r)).collect();
    let (got, widest) = continuous(g, &reqs, 13, &[0; 13], &[None; 13]);
    assert_eq!(widest, 13);
    for (i, (result, _, digest)) in got.iter().enumerate() {
        let text = result.as_ref().unwrap();
        assert_eq!(
            (text, *digest),
            (&alone[i].0, alone[i].1),
            "prompt {i} of {} tokens",
            lengths[i]
        );
    }
}
