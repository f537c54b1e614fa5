//! Command-line interface definition (every flag documents its env var and default).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use steadytext_api::settings::{
    MAX_RETRIES, QUEUE_RETENTION, WORKER_CONCURRENCY, WORKER_POLL_INTERVAL, WORKER_TIMEOUT,
};
use steadytext_core::{CoreError, ModelDir, ThreadPolicy};

use crate::download_progress::ProgressStyle;

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
    /// Rank documents by relevance to a query; prints the method used, then one
    /// `score<TAB>document` line per document, highest score first.
    Rerank(RerankArgs),
    /// Manage model files.
    Models(ModelsArgs),
    /// Measure the engine: tokens/s of single and batched decoding, embeddings/s at batch 1
    /// and 32, peak RSS. Prints one `bench key=value …` line per figure.
    Bench(BenchArgs),
    /// Run the daemon: the HTTP API (native, OpenAI-compatible, /health, /metrics) and, when a
    /// database is configured, the queue worker.
    Serve(ServeArgs),
    /// Run only the queue worker: drain steadytext_queue of the given database.
    Worker(WorkerArgs),
    /// Print the version of steadytext and of its HTTP API.
    Version,
    /// Print reference tables generated from the declarations (README.md embeds them).
    #[command(hide = true)]
    Reference(ReferenceArgs),
}

/// Arguments of the hidden `steadytext reference`.
#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// Which table to print.
    #[command(subcommand)]
    pub command: ReferenceCommand,
}

/// The tables `steadytext reference` prints.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ReferenceCommand {
    /// The markdown table of every `serve` and `worker` flag: env var, default, meaning.
    Flags,
}

/// Arguments of `steadytext serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; a non-loopback address should be paired with `--token`.
    /// Default: 127.0.0.1.
    #[arg(long, env = "STEADYTEXT_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port to listen on (0 picks a free port and prints it at start). Default: 8765.
    #[arg(long, env = "STEADYTEXT_PORT", default_value_t = 8765)]
    pub port: u16,
    /// Also listen on this Unix socket path (point the extension at it with
    /// `steadytext.daemon_url = 'unix:/path'`). Default: none.
    #[arg(long, env = "STEADYTEXT_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Bearer token every call but `/health` must carry (`Authorization: Bearer …`); the
    /// extension sends `steadytext.daemon_token`, and the dashboard (`/ui`) asks for it once in
    /// a login form. On the command line it shows in the process list: prefer `--token-file` or
    /// the environment. Default: none (no authentication).
    #[arg(long, env = "STEADYTEXT_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// File holding the bearer token (its first line; keep it readable only by the daemon's
    /// user), instead of `--token`. Default: none.
    #[arg(long, env = "STEADYTEXT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Let the dashboard (`/ui`) change the queue: cancel a pending or processing request,
    /// retry one that failed for good, pause or resume a derivation. Without it the dashboard
    /// only shows. Default: off.
    #[arg(long, env = "STEADYTEXT_UI_ACTIONS")]
    pub ui_actions: bool,
    /// Engine, cache, database and worker settings.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Arguments of `steadytext worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Engine, cache, database and worker settings.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Settings shared by `serve` and `worker`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Write `{"url", "socket", "worker", "pid"}` (JSON) to this file once the daemon is ready:
    /// every listener bound and, when a worker runs, the worker listening for requests. The
    /// file appears whole (written beside it, then renamed) and is removed at exit. Default:
    /// none.
    #[arg(long, env = "STEADYTEXT_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Most generations decoding at once: a request joins the running decode batch at its next
    /// step while fewer are live, else waits (highest priority first, then oldest) (1–64). Each
    /// place holds a 4096-token KV stream for the daemon's life (Gemma 3 270M: about 27 MiB).
    /// Default: 8.
    #[arg(long, env = "STEADYTEXT_MAX_BATCH", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_batch: u16,
    /// Cache settings.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Database of the queue (for `serve`: without --database-url or --db-name no worker runs).
    #[command(flatten)]
    pub db: DbArgs,
    /// Queue worker settings.
    #[command(flatten)]
    pub worker: WorkerTuning,
}

/// Result cache settings.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Entries kept in the result cache's in-memory LRU tier (1–10000000). Default: 4096.
    #[arg(long, env = "STEADYTEXT_CACHE_CAPACITY", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub cache_capacity: u32,
    /// The persistent result cache file (redb), kept across restarts.
    /// Default: `~/.cache/steadytext/cache.redb`.
    #[arg(long, env = "STEADYTEXT_CACHE_FILE")]
    pub cache_file: Option<PathBuf>,
    /// Keep the result cache in memory only (no cache file). Default: off.
    #[arg(long, env = "STEADYTEXT_NO_DISK_CACHE")]
    pub no_disk_cache: bool,
}

/// How to reach the queue's database. The password comes from the URL, else PGPASSWORD, else
/// ~/.pgpass (or PGPASSFILE).
#[derive(Debug, Args)]
pub struct DbArgs {
    /// Connection URL (`postgresql://user:password@host:port/db`) or libpq key=value string of
    /// the queue's database; overrides the `--db-*` flags. Default: none.
    #[arg(long, env = "STEADYTEXT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Database host name, IP address or Unix socket directory. Default: localhost.
    #[arg(long, env = "PGHOST", default_value = "localhost")]
    pub db_host: String,
    /// Database port. Default: 5432.
    #[arg(long, env = "PGPORT", default_value_t = 5432)]
    pub db_port: u16,
    /// Database name. Default: none (`serve` then runs no worker).
    #[arg(long, env = "PGDATABASE")]
    pub db_name: Option<String>,
    /// Database user, a member of the `steadytext_worker` role. Default: postgres.
    #[arg(long, env = "PGUSER", default_value = "postgres")]
    pub db_user: String,
}

/// Queue worker settings. Each one, when not given, falls back to its GUC (re-read after
/// `SELECT pg_reload_conf()`), then to its default.
#[derive(Debug, Clone, Args)]
pub struct WorkerTuning {
    /// Requests processed at once (slots; a free slot claims the next request; two embeddings
    /// share a slot) (0–256). 0: as many as --max-batch, which fills the engine's decode batch.
    /// Default: the GUC `steadytext.worker_concurrency`, else 0.
    #[arg(long, env = WORKER_CONCURRENCY.env,
          value_parser = clap::value_parser!(u16).range(WORKER_CONCURRENCY.range()))]
    pub concurrency: Option<u16>,
    /// Seconds between polls while a pending request waits to become due, e.g. a retry backing
    /// off (1–3600); with nothing pending the worker waits for `NOTIFY steadytext_jobs` and
    /// polls once a minute. Default: the GUC `steadytext.worker_poll_interval`, else 1.
    #[arg(long, env = WORKER_POLL_INTERVAL.env,
          value_parser = clap::value_parser!(u32).range(WORKER_POLL_INTERVAL.range()))]
    pub poll_interval: Option<u32>,
    /// Retries of a failed request before it fails for good (0–100), capped by the request's
    /// own `max_retries`. Default: the GUC `steadytext.max_retries`, else 3.
    #[arg(long, env = MAX_RETRIES.env,
          value_parser = clap::value_parser!(u32).range(MAX_RETRIES.range()))]
    pub max_retries: Option<u32>,
    /// Seconds one attempt of a request may run before it fails and is retried (1–86400).
    /// Default: the GUC `steadytext.worker_timeout`, else 300.
    #[arg(long, env = WORKER_TIMEOUT.env,
          value_parser = clap::value_parser!(u32).range(WORKER_TIMEOUT.range()))]
    pub timeout: Option<u32>,
    /// Seconds finished requests (completed, failed, cancelled) are kept before the worker
    /// deletes them, a few hundred per statement (0–315360000); 0 keeps them forever.
    /// Default: the GUC `steadytext.queue_retention`, else 604800 (7 days).
    #[arg(long, env = QUEUE_RETENTION.env,
          value_parser = clap::value_parser!(u32).range(QUEUE_RETENTION.range()))]
    pub queue_retention: Option<u32>,
    /// Seconds of the lease on claimed requests, renewed by heartbeats every third of it; a
    /// worker that dies loses its requests this long after its last heartbeat (2–3600).
    /// Default: 30.
    #[arg(long, env = "STEADYTEXT_WORKER_LEASE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(2..=3600))]
    pub lease: u32,
    /// This worker's id in `steadytext_workers` (see `steadytext_worker_status()`).
    /// Default: `<hostname>-<pid>`.
    #[arg(long, env = "STEADYTEXT_WORKER_ID")]
    pub worker_id: Option<String>,
}

/// Arguments of `steadytext bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Tokens generated per prompt (1–4096). Default: 32.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_tokens: u32,
    /// Measure single and batch-8 generation only (skip the constrained and embedding figures). Default: off.
    #[arg(long)]
    pub generate_only: bool,
    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Where the model files are: the one declaration of `--model-dir`.
#[derive(Debug, Args)]
pub struct ModelDirArg {
    /// Directory holding the model files. Default: `~/.cache/steadytext/models`.
    #[arg(long, env = "STEADYTEXT_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
}

impl ModelDirArg {
    /// The model directory: `--model-dir`, else the default resolution of [`ModelDir`].
    pub fn resolve(&self) -> Result<ModelDir, CoreError> {
        self.model_dir.clone().map_or_else(ModelDir::resolve, |dir| Ok(ModelDir::new(dir)))
    }
}

/// Settings shared by every command that loads a model.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// The model directory.
    #[command(flatten)]
    pub model_dir: ModelDirArg,
    /// CPU threads for llama.cpp (1–256). A number fixes the count; without one it adapts: up
    /// to the available cores, but only those other processes leave free (measured every 0.3 s,
    /// at least 1), because llama.cpp's threads spin while they wait for each other and one that
    /// lost its core stalls the rest (bench/README.md, `contention`). Outputs do not depend on the count. In a container
    /// limited by a CPU quota, set a number (the load is measured machine-wide).
    /// Default: adaptive, up to the number of available cores.
    #[arg(long, env = "STEADYTEXT_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

impl EngineArgs {
    /// The model directory: `--model-dir`, else the default resolution of [`ModelDir`].
    pub fn model_dir(&self) -> Result<ModelDir, CoreError> {
        self.model_dir.resolve()
    }

    /// The largest thread count: `--threads`, else the number of available cores.
    pub fn thread_count(&self) -> usize {
        self.threads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// How generation picks its thread count: `--threads` fixes it; without it, adaptive up
    /// to the available cores.
    pub fn thread_policy(&self) -> ThreadPolicy {
        match self.threads {
            Some(n) => ThreadPolicy::Fixed(usize::from(n)),
            None => ThreadPolicy::Adaptive(self.thread_count()),
        }
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
    /// List the registry's models: name, role, set, whether the file is present, path, and
    /// which model currently serves each role.
    List(ListArgs),
    /// Download a registry model from Hugging Face into the model directory (resumable,
    /// checksummed when the registry knows the sha256). Packaged models come from
    /// scripts/fetch-models instead.
    Fetch(FetchArgs),
}

/// Arguments of `steadytext models list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The model directory.
    #[command(flatten)]
    pub model_dir: ModelDirArg,
}

/// Arguments of `steadytext models fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Registry name of the model (see `steadytext models list`).
    pub name: String,
    /// Allow the download (`1`/`true`/`yes` in the environment). Default: off — nothing is
    /// downloaded unless allowed.
    #[arg(long, env = "STEADYTEXT_ALLOW_DOWNLOAD", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_download: bool,
    /// Base URL of the Hugging Face-style server. Default: https://huggingface.co.
    #[arg(long, env = "STEADYTEXT_HF_ENDPOINT", default_value = steadytext_core::download::DEFAULT_ENDPOINT)]
    pub hf_endpoint: String,
    /// How the download's progress (bytes, total, rate) is shown on stderr: `auto` (one updating
    /// line on a terminal, else a plain line at the start, every 10 seconds and at the end),
    /// `bar`, `lines` or `off`. Default: auto.
    #[arg(long, env = "STEADYTEXT_PROGRESS", value_enum, default_value_t = ProgressStyle::Auto)]
    pub progress: ProgressStyle,
    /// The model directory.
    #[command(flatten)]
    pub model_dir: ModelDirArg,
}

/// Arguments of `steadytext rerank`.
#[derive(Debug, Args)]
pub struct RerankArgs {
    /// The query the documents are ranked against.
    #[arg(long)]
    pub query: String,
    /// Task instruction (used by Qwen3-Reranker models). Default: "Given a web search query,
    /// retrieve relevant passages that answer the query".
    #[arg(long, default_value = steadytext_core::rerank::DEFAULT_TASK)]
    pub task: String,
    /// The documents to rank.
    #[arg(required = true, num_args = 1..)]
    pub documents: Vec<String>,
    /// Reranker model: a registry name or a GGUF path. Default: none — embedding cosine on
    /// the embedding model, reported as such.
    #[arg(long, env = "STEADYTEXT_RERANK_MODEL")]
    pub model: Option<String>,
    /// Embedding model of the cosine fallback: a registry name or a GGUF path. Default:
    /// all-minilm-l6-v2.
    #[arg(long, env = "STEADYTEXT_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Arguments of `steadytext models import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The model directory.
    #[command(flatten)]
    pub model_dir: ModelDirArg,
}
