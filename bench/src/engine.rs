//! Figure 5: single-sequence decode tokens/s of the engine (`steadytext bench`, line
//! `generate_single`) against raw llama.cpp (`bench/llama-raw/decode.cpp`, linked to the very
//! static libraries cargo built for the engine) on the same GGUF, prompts, token budget and
//! thread count; and the batch-of-8 speed-up of each (batched tokens/s over single tokens/s),
//! raw llama.cpp batching the way its examples do, without the engine's determinism
//! constraints. The two alternate `rounds` times so that load changes hit both alike.

use std::path::Path;
use std::process::Command;

use crate::error::{BenchError, Result};
use crate::report::{field_of, Line};
use crate::setup::Env;

/// Runs both `rounds` times and prints one line with the ratio engine / raw.
pub fn run(env: &Env, raw_bin: &Path, model: &Path, max_tokens: u32, rounds: u32) -> Result<()> {
    let threads = env.threads.to_string();
    let budget = max_tokens.to_string();
    let (mut raw, mut eng) = ((0.0, 0.0), (0.0, 0.0));
    // (tokens, seconds) of the batch-of-8 runs
    let (mut raw_batch, mut eng_batch) = ((0.0, 0.0), (0.0, 0.0));
    for _ in 0..rounds.max(1) {
        let out = output(Command::new(raw_bin).arg(model).arg(&threads).arg(&budget))?;
        let line = line_starting(&out, "raw_llama_cpp")?;
        raw.0 += num(line, "tokens")?;
        raw.1 += num(line, "seconds")?;
        let line = line_starting(&out, "raw_llama_cpp_batch8")?;
        raw_batch.0 += num(line, "tokens")?;
        raw_batch.1 += num(line, "seconds")?;

        let out = output(Command::new(&env.steadytext_bin).args([
            "bench",
            "--threads",
            &threads,
            "--max-tokens",
            &budget,
        ]))?;
        let line = line_starting(&out, "bench generate_single")?;
        let tokens = num(line, "tokens")?;
        eng.0 += tokens;
        eng.1 += tokens / num(line, "tokens_per_s")?;
        let line = line_starting(&out, "bench generate_batch8")?;
        let tokens = num(line, "tokens")?;
        eng_batch.0 += tokens;
        eng_batch.1 += tokens / num(line, "tokens_per_s")?;
    }
    let (raw_tps, eng_tps) = (raw.0 / raw.1, eng.0 / eng.1);
    println!(
        "{}",
        Line::new("engine_vs_llama_cpp")
            .field("model", model.file_name().map(|f| f.to_string_lossy()).unwrap_or_default())
            .field("threads", env.threads)
            .field("max_tokens", max_tokens)
            .field("prompts", 8)
            .field("rounds", rounds.max(1))
            .field("engine_tokens", eng.0)
            .field("raw_tokens", raw.0)
            .num("engine_tokens_per_s", eng_tps, 1)
            .num("raw_tokens_per_s", raw_tps, 1)
            .num("ratio", eng_tps / raw_tps, 3)
            .with_load()
    );
    let (raw_batch_tps, eng_batch_tps) = (raw_batch.0 / raw_batch.1, eng_batch.0 / eng_batch.1);
    println!(
        "{}",
        Line::new("batch8_speedup_vs_llama_cpp")
            .field("threads", env.threads)
            .field("max_tokens", max_tokens)
            .field("rounds", rounds.max(1))
            .num("engine_batch8_tokens_per_s", eng_batch_tps, 1)
            .num("raw_batch8_tokens_per_s", raw_batch_tps, 1)
            .num("engine_speedup", eng_batch_tps / eng_tps, 2)
            .num("raw_speedup", raw_batch_tps / raw_tps, 2)
            .with_load()
    );
    Ok(())
}

/// The stdout of `cmd`, which must succeed.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(BenchError::io(format!("run {cmd:?}")))?;
    if !out.status.success() {
        return Err(BenchError::Process(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first line of `out` starting with `prefix`.
pub(crate) fn line_starting<'a>(out: &'a str, prefix: &str) -> Result<&'a str> {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .ok_or_else(|| BenchError::Process(format!("no line starting with {prefix:?} in {out:?}")))
}

/// The number after `key=` in `line`.
pub(crate) fn num(line: &str, key: &str) -> Result<f64> {
    field_of(line, key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::Process(format!("no number {key}= in {line:?}")))
}
