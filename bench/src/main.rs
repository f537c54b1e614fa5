//! `steadytext-bench`: one subcommand per benchmark figure (see bench/README.md).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use steadytext_bench::drain::{self, Workload};
use steadytext_bench::setup::Env;
use steadytext_bench::{engine, enqueue, queue_latency, sync_latency};

/// Rerunnable benchmarks of pg_steadytext; each prints `bench figure=… key=value …` lines.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The `steadytext` binary to benchmark (build it with `cargo build --release -p steadytext`).
    /// Default: target/release/steadytext of this workspace.
    #[arg(long, env = "STEADYTEXT_BIN", global = true)]
    steadytext_bin: Option<PathBuf>,
    /// llama.cpp threads of one daemon (drain: divided among the workers). Default: all cores.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Which figure.
    #[command(subcommand)]
    figure: Figure,
}

/// The figures.
#[derive(Debug, Subcommand)]
enum Figure {
    /// Figure 1: jobs/s of steadytext_generate_async in one statement and as single statements.
    Enqueue {
        /// Jobs per variant. Default: 10000.
        #[arg(long, default_value_t = 10_000)]
        jobs: u32,
    },
    /// Figure 2a: enqueue → NOTIFY steadytext_completed round trip of a cache hit (p50/p95/p99).
    QueueRoundTrip {
        /// Timed round trips. Default: 200.
        #[arg(long, default_value_t = 200)]
        jobs: u32,
    },
    /// Figure 2b: commit of the completing transaction → steadytext_get_async_result returns.
    QueueWakeup {
        /// Timed waits. Default: 100.
        #[arg(long, default_value_t = 100)]
        samples: u32,
    },
    /// Figure 3a: jobs/s draining generation jobs with 1, 2, 4 workers × concurrency 1, 8.
    DrainGenerate {
        /// Jobs per run. Default: 200.
        #[arg(long, default_value_t = 200)]
        jobs: u32,
        /// Tokens per job. Default: 16.
        #[arg(long, default_value_t = 16)]
        max_tokens: i32,
        /// Worker process counts. Default: 1,2,4.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
        workers: Vec<usize>,
        /// Per-worker concurrencies (--concurrency). Default: 1,8.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 8])]
        concurrency: Vec<u16>,
    },
    /// Figure 3b: jobs/s draining embedding jobs with 1, 2, 4 workers × concurrency 1, 8.
    DrainEmbed {
        /// Jobs per run. Default: 2000.
        #[arg(long, default_value_t = 2000)]
        jobs: u32,
        /// Worker process counts. Default: 1,2,4.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
        workers: Vec<usize>,
        /// Per-worker concurrencies (--concurrency). Default: 1,8.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 8])]
        concurrency: Vec<u16>,
    },
    /// Figure 4: steadytext_generate latency on a cache hit and a cache miss (p50/p95).
    Sync {
        /// Timed cache hits. Default: 200.
        #[arg(long, default_value_t = 200)]
        hits: u32,
        /// Timed cache misses. Default: 30.
        #[arg(long, default_value_t = 30)]
        misses: u32,
        /// Tokens per call. Default: 16.
        #[arg(long, default_value_t = 16)]
        max_tokens: i32,
    },
    /// Figure 5: engine single-sequence tokens/s vs raw llama.cpp, same GGUF and threads.
    Engine {
        /// The raw llama.cpp program (bench/build-llama-raw prints its path).
        #[arg(long)]
        raw_bin: PathBuf,
        /// The GGUF. Default: gemma-3-270m-q4_k_m.gguf in STEADYTEXT_MODEL_DIR or
        /// ~/.cache/steadytext/models.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Tokens per prompt. Default: 32.
        #[arg(long, default_value_t = 32)]
        max_tokens: u32,
        /// Alternating rounds of both programs. Default: 2.
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let steadytext_bin = cli.steadytext_bin.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/steadytext")
    });
    anyhow::ensure!(
        steadytext_bin.is_file(),
        "{} not found; run `cargo build --release -p steadytext`",
        steadytext_bin.display()
    );
    let threads =
        cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let env = Env { steadytext_bin, threads };
    match cli.figure {
        Figure::Enqueue { jobs } => enqueue::run(jobs)?,
        Figure::QueueRoundTrip { jobs } => queue_latency::round_trip(&env, jobs)?,
        Figure::QueueWakeup { samples } => queue_latency::wake(samples)?,
        Figure::DrainGenerate { jobs, max_tokens, workers, concurrency } => {
            drain::run(&env, Workload::Generate { max_tokens }, jobs, &workers, &concurrency)?
        }
        Figure::DrainEmbed { jobs, workers, concurrency } => {
            drain::run(&env, Workload::Embed, jobs, &workers, &concurrency)?
        }
        Figure::Sync { hits, misses, max_tokens } => {
            sync_latency::run(&env, hits, misses, max_tokens)?
        }
        Figure::Engine { raw_bin, model, max_tokens, rounds } => {
            let model = model.unwrap_or_else(|| {
                let dir = std::env::var_os("STEADYTEXT_MODEL_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                            .join(".cache/steadytext/models")
                    });
                dir.join("gemma-3-270m-q4_k_m.gguf")
            });
            engine::run(&env, &raw_bin, &model, max_tokens, rounds)?
        }
    }
    Ok(())
}
