//! `steadytext generate`: one completion on the packaged generation model, printed to stdout.

use std::io::Write;

use anyhow::Context;
use steadytext_core::models::GEMMA3_270M;
use steadytext_core::{GenerateRequest, Generator};

use crate::cli::{EngineArgs, GenerateArgs};

/// Runs `steadytext generate`.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let max_tokens = steadytext_api::limits::check_max_tokens(args.max_tokens)?;
    let generator = load_generator(&args.engine)?;
    let text = generator.generate(&GenerateRequest {
        prompt: args.prompt.clone(),
        max_tokens,
        seed: args.seed,
        constraint: None,
        special_tokens: false,
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.write_all(b"\n")?;
    Ok(())
}

/// Loads the packaged generation model with the engine settings.
pub fn load_generator(engine: &EngineArgs) -> anyhow::Result<Generator> {
    let path = engine.model_dir()?.locate(&GEMMA3_270M)?;
    Generator::load(&path, engine.thread_policy())
        .with_context(|| format!("loading {}", path.display()))
}
