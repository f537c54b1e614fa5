//! `steadytext generate-json`, `generate-regex` and `generate-choice`: one constrained
//! completion on the packaged generation model, printed to stdout.

use std::io::Write;

use anyhow::Context;
use steadytext_core::{Constraint, GenerateRequest};

use crate::cli::{ConstrainedArgs, GenerateChoiceArgs, GenerateJsonArgs, GenerateRegexArgs};
use crate::commands::generate::load_generator;

/// Runs `steadytext generate-json`.
pub fn run_json(args: &GenerateJsonArgs) -> anyhow::Result<()> {
    let schema: serde_json::Value =
        serde_json::from_str(&args.schema).context("--schema is not valid JSON")?;
    run(&args.prompt, Constraint::Json(schema), &args.gen)
}

/// Runs `steadytext generate-regex`.
pub fn run_regex(args: &GenerateRegexArgs) -> anyhow::Result<()> {
    run(&args.prompt, Constraint::Regex(args.pattern.clone()), &args.gen)
}

/// Runs `steadytext generate-choice`.
pub fn run_choice(args: &GenerateChoiceArgs) -> anyhow::Result<()> {
    run(&args.prompt, Constraint::Choice(args.choices.clone()), &args.gen)
}

/// Validates the request, then generates and prints the output and a newline.
fn run(prompt: &str, constraint: Constraint, gen: &ConstrainedArgs) -> anyhow::Result<()> {
    let max_tokens = steadytext_api::limits::check_max_tokens(gen.max_tokens)?;
    // Refuse a bad constraint before paying for the model load.
    constraint.validate()?;
    let generator = load_generator(&gen.engine)?;
    let text = generator.generate(&GenerateRequest {
        prompt: prompt.to_owned(),
        max_tokens,
        seed: gen.seed,
        constraint: Some(constraint),
        special_tokens: false,
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.write_all(b"\n")?;
    Ok(())
}
