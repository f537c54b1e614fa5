//! `steadytext bench`: throughput of the engine on the packaged models, as ratios measured in
//! one run (never asserted by a timed test).

use std::time::{Duration, Instant};

use steadytext_core::{Constraint, GenerateRequest, ThreadPolicy};

use crate::cli::BenchArgs;
use crate::commands::embed::load_embedder;
use crate::commands::generate::load_generator;

/// Eight different prompts, decoded one by one and then as one batch: the lines of
/// bench/prompts.inc, which the raw llama.cpp baseline (bench/llama-raw/decode.cpp) #includes.
fn prompts() -> Vec<&'static str> {
    include_str!("../../../../bench/prompts.inc")
        .lines()
        .filter_map(|line| line.trim().strip_prefix('"')?.strip_suffix("\","))
        .collect()
}

/// The schema of the constrained figure: the documentation's extraction example, an object whose
/// `entities` array may hold anything; a small model often keeps writing it until its budget
/// runs low and the guide closes it.
const CONSTRAINED_SCHEMA: &str = r#"{"type":"object","properties":{"entities":{"type":"array"}}}"#;

/// Rounds of the embedding figures: each embeds the 32 texts one by one, then as one batch.
const EMBED_ROUNDS: usize = 4;

/// Runs `steadytext bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let threads = match args.engine.thread_policy() {
        ThreadPolicy::Fixed(n) => n.to_string(),
        ThreadPolicy::Adaptive(n) => format!("adaptive{n}"),
    };
    let generator = load_generator(&args.engine)?;
    let reqs: Vec<GenerateRequest> = prompts()
        .iter()
        .map(|p| GenerateRequest {
            prompt: (*p).into(),
            max_tokens: args.max_tokens,
            seed: 42,
            constraint: None,
            special_tokens: false,
        })
        .collect();
    generator.generate(&reqs[0])?; // warm-up: page the weights in

    let start = Instant::now();
    let mut single_tokens = 0u64;
    for req in &reqs {
        for g in generator.generate_batch(std::slice::from_ref(req))? {
            single_tokens += u64::from(g?.tokens);
        }
    }
    let single = single_tokens as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut batch_tokens = 0u64;
    for g in generator.generate_batch(&reqs)? {
        batch_tokens += u64::from(g?.tokens);
    }
    let batched = batch_tokens as f64 / start.elapsed().as_secs_f64();
    println!("bench generate_kernels companion_always={}", generator.companion_always());
    println!("bench generate_single prompts=8 threads={threads} tokens={single_tokens} tokens_per_s={single:.1}");
    println!("bench generate_batch8 prompts=8 threads={threads} tokens={batch_tokens} tokens_per_s={batched:.1} ratio={:.2}", batched / single);
    if !args.generate_only {
        extraction_figures(&generator, &threads, args.max_tokens)?;
    }
    drop(generator);
    if args.generate_only {
        return Ok(());
    }

    let embedder = load_embedder(&args.engine)?;
    let prompts = prompts();
    let texts: Vec<String> =
        (0..32).map(|i| format!("{} (sentence number {i})", prompts[i % prompts.len()])).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    embedder.embed(refs[0])?; // warm-up
                              // rounds alternate between the two modes, so that drift in the machine's speed hits both
    let (mut one_time, mut many_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..EMBED_ROUNDS {
        let start = Instant::now();
        for t in &refs {
            embedder.embed(t)?;
        }
        one_time += start.elapsed();
        let start = Instant::now();
        embedder.embed_batch(&refs)?;
        many_time += start.elapsed();
    }
    let done = (EMBED_ROUNDS * refs.len()) as f64;
    let (one, many) = (done / one_time.as_secs_f64(), done / many_time.as_secs_f64());
    println!("bench embed_batch1 texts=32 rounds={EMBED_ROUNDS} threads={threads} embeddings_per_s={one:.1}");
    println!(
        "bench embed_batch32 texts=32 rounds={EMBED_ROUNDS} threads={threads} embeddings_per_s={many:.1} ratio={:.2}",
        many / one
    );
    println!("bench peak_rss_mib={:.1}", peak_rss_kib()? as f64 / 1024.0);
    Ok(())
}

/// Peak resident set size of this process (`VmHWM` of /proc/self/status), in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// The constrained figure: extraction prompts one by one, free and constrained to the
/// documentation's schema in turn (so that a change in the machine's speed hits both alike),
/// after a warm-up request that builds the vocabulary's llguidance environment (once per model).
fn extraction_figures(
    generator: &steadytext_core::Generator,
    threads: &str,
    max_tokens: u32,
) -> anyhow::Result<()> {
    let schema: serde_json::Value = serde_json::from_str(CONSTRAINED_SCHEMA)?;
    let extraction: Vec<GenerateRequest> = prompts()
        .iter()
        .map(|p| GenerateRequest {
            prompt: format!("Extract the entities from: {p}\nJSON:"),
            max_tokens,
            seed: 42,
            constraint: None,
            special_tokens: false,
        })
        .collect();
    generator.generate(&GenerateRequest {
        constraint: Some(Constraint::Json(schema.clone())),
        ..extraction[0].clone()
    })?;
    let (mut free, mut constrained) = ((0u64, Duration::ZERO), (0u64, Duration::ZERO));
    for req in &extraction {
        let json =
            GenerateRequest { constraint: Some(Constraint::Json(schema.clone())), ..req.clone() };
        for (req, sum) in [(req, &mut free), (&json, &mut constrained)] {
            let start = Instant::now();
            for g in generator.generate_batch(std::slice::from_ref(req))? {
                sum.0 += u64::from(g?.tokens);
            }
            sum.1 += start.elapsed();
        }
    }
    let free_tps = free.0 as f64 / free.1.as_secs_f64();
    let constrained_tps = constrained.0 as f64 / constrained.1.as_secs_f64();
    println!("bench generate_extract_free prompts=8 threads={threads} tokens={} tokens_per_s={free_tps:.1}", free.0);
    println!("bench generate_extract_json prompts=8 threads={threads} tokens={} tokens_per_s={constrained_tps:.1} ratio={:.2}", constrained.0, constrained_tps / free_tps);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eight_prompts_are_read_from_the_shared_file() {
        let prompts = prompts();
        assert_eq!(prompts.len(), 8, "{prompts:?}");
        assert_eq!(prompts[0], "The capital of France is");
        assert!(prompts.iter().all(|p| !p.is_empty() && !p.contains(['"', '\\'])), "{prompts:?}");
    }
}
