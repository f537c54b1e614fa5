//! Figure 6: single-sequence tokens/s of constrained decoding against free decoding, both
//! measured by one `steadytext bench` run: 8 extraction prompts ("Extract the entities from:
//! …\nJSON:") decoded one at a time, free (its `generate_extract_free` line) and constrained to
//! the documentation's extraction schema (`generate_extract_json`) in turn, same budget;
//! `rounds` runs summed. Tokens/s include each request's prompt and context set-up, as a caller
//! sees them; a constrained output that completes early has fewer tokens to spread them over.

use std::process::Command;

use crate::engine::{line_starting, num, output};
use crate::error::Result;
use crate::report::Line;
use crate::setup::Env;

/// Runs `steadytext bench` `rounds` times and prints one line with both rates and their ratio.
pub fn run(env: &Env, max_tokens: u32, rounds: u32) -> Result<()> {
    let threads = env.threads.to_string();
    let budget = max_tokens.to_string();
    // (tokens, seconds) of each
    let (mut free, mut constrained) = ((0.0, 0.0), (0.0, 0.0));
    for _ in 0..rounds.max(1) {
        let out = output(Command::new(&env.steadytext_bin).args([
            "bench",
            "--threads",
            &threads,
            "--max-tokens",
            &budget,
        ]))?;
        for (prefix, sum) in [
            ("bench generate_extract_free ", &mut free),
            ("bench generate_extract_json ", &mut constrained),
        ] {
            let line = line_starting(&out, prefix)?;
            let tokens = num(line, "tokens")?;
            sum.0 += tokens;
            sum.1 += tokens / num(line, "tokens_per_s")?;
        }
    }
    let (free_tps, constrained_tps) = (free.0 / free.1, constrained.0 / constrained.1);
    println!(
        "{}",
        Line::new("constrained_vs_free")
            .field("threads", env.threads)
            .field("max_tokens", max_tokens)
            .field("prompts", 8)
            .field("rounds", rounds.max(1))
            .field("free_tokens", free.0)
            .field("constrained_tokens", constrained.0)
            .num("free_tokens_per_s", free_tps, 1)
            .num("constrained_tokens_per_s", constrained_tps, 1)
            .num("ratio", constrained_tps / free_tps, 3)
            .with_load()
    );
    Ok(())
}
