//! Command-line interface definition (every flag documents its env var and default).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use steadytext_core::ModelDir;

/// Deterministic local AI: same input, same model, same seed → byte-identical output.
#[derive(Debug, Parser)]
#[command(name = "steadytext", version = steadytext_api::VERSION)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate text from a prompt with the packaged generation model (greedy, deterministic).
    Generate(GenerateArgs),
    /// Generate bare JSON that validates against a JSON Schema (constrained greedy decoding).
    GenerateJson(GenerateJsonArgs),
    /// Generate text that fully matches a regular expression (constrained greedy decoding).
    GenerateRegex(GenerateRegexArgs),
    /// Generate exactly one of the given choices (constrained greedy decoding).
    GenerateChoice(GenerateChoiceArgs),
    /// Embed texts with the packaged embedding model (all-MiniLM-L6-v2, 384-d, unit length);
    /// prints one pgvector literal `[x,y,…]` per text.
    Embed(EmbedArgs),
    /// Manage model files.
    Models(ModelsArgs),
    /// Measure the engine: tokens/s of single and batched decoding, embeddings/s at batch 1
    /// and 32, peak RSS. Prints one `bench key=value …` line per figure.
    Bench(BenchArgs),
    /// Print the version of steadytext and of its HTTP API.
    Version,
}

/// Arguments of `steadytext bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Tokens generated per prompt (1–4096). Default: 32.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_tokens: u32,
    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Settings shared by every command that loads a model.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Directory holding the model files. Default: ~/.cache/steadytext/models.
    #[arg(long, env = "STEADYTEXT_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// CPU threads for llama.cpp (1–256). Default: the number of available cores.
    #[arg(long, env = "STEADYTEXT_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

impl EngineArgs {
    /// The model directory: `--model-dir`, else the default resolution of [`ModelDir`].
    pub fn model_dir(&self) -> ModelDir {
        self.model_dir.clone().map(ModelDir::new).unwrap_or_else(ModelDir::resolve)
    }

    /// The thread count: `--threads`, else the number of available cores.
    pub fn thread_count(&self) -> usize {
        self.threads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// Arguments of `steadytext generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The prompt to complete.
    pub prompt: String,
    /// Maximum number of tokens to generate (1–4096). Default: 512.
    #[arg(long, env = "STEADYTEXT_MAX_TOKENS", default_value_t = steadytext_api::limits::DEFAULT_MAX_TOKENS)]
    pub max_tokens: i32,
    /// Seed (part of the request identity). Default: 42.
    #[arg(long, default_value_t = steadytext_api::limits::DEFAULT_SEED as u32)]
    pub seed: u32,
    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Arguments of `steadytext generate-json`.
#[derive(Debug, Args)]
pub struct GenerateJsonArgs {
    /// The prompt to complete.
    pub prompt: String,
    /// The JSON Schema the output must validate against, as JSON text (an object or a boolean).
    /// Required; no env var.
    #[arg(long)]
    pub schema: String,
    /// Shared generation settings.
    #[command(flatten)]
    pub gen: ConstrainedArgs,
}

/// Arguments of `steadytext generate-regex`.
#[derive(Debug, Args)]
pub struct GenerateRegexArgs {
    /// The prompt to complete.
    pub prompt: String,
    /// The regular expression (Rust `regex` syntax, no look-around) the whole output must match.
    /// Required; no env var.
    #[arg(long)]
    pub pattern: String,
    /// Shared generation settings.
    #[command(flatten)]
    pub gen: ConstrainedArgs,
}

/// Arguments of `steadytext generate-choice`.
#[derive(Debug, Args)]
pub struct GenerateChoiceArgs {
    /// The prompt to complete.
    pub prompt: String,
    /// One allowed output; repeat the flag for each choice (non-empty, distinct). Required; no
    /// env var.
    #[arg(long = "choice", required = true)]
    pub choices: Vec<String>,
    /// Shared generation settings.
    #[command(flatten)]
    pub gen: ConstrainedArgs,
}

/// Settings shared by the constrained generation commands.
#[derive(Debug, Args)]
pub struct ConstrainedArgs {
    /// Maximum number of tokens to generate (1–4096); running out before the output satisfies
    /// the constraint is an error. Default: 512.
    #[arg(long, env = "STEADYTEXT_MAX_TOKENS", default_value_t = steadytext_api::limits::DEFAULT_MAX_TOKENS)]
    pub max_tokens: i32,
    /// Seed (part of the request identity). Default: 42; no env var.
    #[arg(long, default_value_t = steadytext_api::limits::DEFAULT_SEED as u32)]
    pub seed: u32,
    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Arguments of `steadytext embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// The texts to embed (one output line each, in order).
    #[arg(required = true, num_args = 1..)]
    pub texts: Vec<String>,
    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Arguments of `steadytext models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// What to do with the models.
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// The `steadytext models` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Convert the packaged all-MiniLM-L6-v2 folder into its GGUF file (idempotent).
    Import(ImportArgs),
}

/// Arguments of `steadytext models import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Directory holding the model files. Default: ~/.cache/steadytext/models.
    #[arg(long, env = "STEADYTEXT_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
}
