//! `steadytext models`: managing the model files in the model directory.

use anyhow::Context;
use steadytext_core::models::{ImportOutcome, ModelDir, MINILM_L6_V2};

use crate::cli::ImportArgs;

/// Runs `steadytext models import`: converts the all-MiniLM-L6-v2 folder into its GGUF file,
/// or reports that the GGUF file is already there.
pub fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let dir = args.model_dir.clone().map(ModelDir::new).unwrap_or_else(ModelDir::resolve);
    let outcome = dir
        .import(&MINILM_L6_V2)
        .with_context(|| format!("importing {} in {}", MINILM_L6_V2.name, dir.path().display()))?;
    match outcome {
        ImportOutcome::AlreadyPresent(path) => {
            println!("{}: already imported at {}", MINILM_L6_V2.name, path.display())
        }
        ImportOutcome::Converted(path) => {
            println!("{}: imported into {}", MINILM_L6_V2.name, path.display())
        }
    }
    Ok(())
}
