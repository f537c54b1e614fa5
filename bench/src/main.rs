//! `steadytext-bench`: one subcommand per benchmark figure (see bench/README.md).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use steadytext_bench::contention::Target;
use steadytext_bench::drain::{self, Workload};
use steadytext_bench::mixed_latency::{self, Mix};
use steadytext_bench::setup::Env;
use steadytext_bench::{
    cancel_release, constrained, contention, derive, engine, enqueue, long_prompt_stall,
    many_daemons, queue_growth, queue_latency, shared_cache, sync_latency, ui_page_cost,
};

/// Rerunnable benchmarks of pg_steadytext; each prints `bench figure=… key=value …` lines.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The `steadytext` binary to benchmark (build it with `cargo build --release -p steadytext`).
    /// Default: target/release/steadytext of this workspace.
    #[arg(long, env = "STEADYTEXT_BIN", global = true)]
    steadytext_bin: Option<PathBuf>,
    /// llama.cpp threads of one daemon (drain: divided among the workers; engine: both
    /// programs). Default: all cores; `serve` daemons then use their own default (adaptive up
    /// to all cores), `--threads` fixes their count.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Which figure.
    #[command(subcommand)]
    figure: Figure,
}

/// The figures.
#[derive(Debug, Subcommand)]
enum Figure {
    /// Figure 1: jobs/s of steadytext_generate_async in one statement and as single statements,
    /// into an empty and a deep queue, next to an INSERT + pg_notify into a plain table.
    Enqueue {
        /// Jobs per variant. Default: 10000.
        #[arg(long, default_value_t = 10_000)]
        jobs: u32,
        /// Pending requests already queued for the deep variant. Default: 100000.
        #[arg(long, default_value_t = 100_000)]
        deep: u32,
    },
    /// Derivations: single-row and bulk INSERTs into a table with an embedding derivation, next
    /// to the hand-written trigger of the upstream docs and to no trigger.
    DeriveWriteOverhead {
        /// Single-row INSERTs per variant. Default: 2000.
        #[arg(long, default_value_t = 2000)]
        singles: u32,
        /// Rows of the bulk INSERT … SELECT. Default: 100000.
        #[arg(long, default_value_t = 100_000)]
        bulk: u32,
    },
    /// Derivations: commit of an UPDATE → its new embedding in the row, next to the
    /// steadytext_embed_async round trip (p50/p95).
    DeriveFreshness {
        /// UPDATEs (and anchor round trips). Default: 100.
        #[arg(long, default_value_t = 100)]
        updates: u32,
    },
    /// Derivations: rows/s of a backfill next to draining the same texts enqueued with
    /// steadytext_embed_batch_async.
    DeriveBackfill {
        /// Rows. Default: 100000.
        #[arg(long, default_value_t = 100_000)]
        rows: u32,
        /// bench/llama-raw's decode binary (`bench/build-llama-raw` prints it); its embed
        /// program beside it embeds the same texts. Default: none (no raw anchor).
        #[arg(long)]
        raw_bin: Option<PathBuf>,
    },
    /// Derivations: chunks computed after one paragraph of a 20-paragraph document is edited.
    DeriveEditOneParagraph,
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
    /// Completion throughput of one worker when every result comes from its cache, against a
    /// raw-SQL claim-10/complete-many loop on the same rows.
    DrainCached {
        /// Jobs per run. Default: 20000.
        #[arg(long, default_value_t = 20_000)]
        jobs: u32,
        /// The worker's --concurrency. Default: 16.
        #[arg(long, default_value_t = 16)]
        concurrency: u16,
    },
    /// The dashboard's pages on a queue of a million rows (p50/p95 per page).
    UiPageCost {
        /// Requests in the queue. Default: 1000000.
        #[arg(long, default_value_t = 1_000_000)]
        rows: i32,
        /// Timed fetches per page. Default: 20.
        #[arg(long, default_value_t = 20)]
        samples: usize,
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
    /// Figure: sync generation answered by the result cache shared in PostgreSQL (a daemon
    /// with an empty local cache) against a local hit, a miss and the bare SQL lookup.
    SharedCache {
        /// Prompts timed on each path. Default: 30.
        #[arg(long, default_value_t = 30)]
        requests: u32,
        /// Tokens per call. Default: 16.
        #[arg(long, default_value_t = 16)]
        max_tokens: i32,
    },
    /// Figure 6: short requests' latency beside long generations, and with none (p50/p95).
    MixedLatency {
        /// Long generations running meanwhile. Default: 8.
        #[arg(long, default_value_t = 8)]
        longs: u32,
        /// Tokens of each long generation. Default: 256.
        #[arg(long, default_value_t = 256)]
        long_tokens: i32,
        /// Embeddings, and 4-token generations, per phase. Default: 20.
        #[arg(long, default_value_t = 20)]
        shorts: u32,
        /// Worker --concurrency (above --longs, so short requests find a slot). Default: 16.
        #[arg(long, default_value_t = 16)]
        concurrency: u16,
        /// Engine --max-batch (above --longs, so short generations join at once). Default: 16.
        #[arg(long, default_value_t = 16)]
        max_batch: u16,
    },
    /// Figure 9: a ~1 500-token prompt arriving while 8 generations stream: their longest gap
    /// and its time to first piece, against the prompt alone and one 512-token chunk alone.
    LongPromptStall {
        /// Trials. Default: 3.
        #[arg(long, default_value_t = 3)]
        trials: u32,
    },
    /// Figure 10: many workers on one queue: idle statements per daemon, and cache-hit
    /// completions with all of them against one.
    ManyDaemons {
        /// Worker processes. Default: 12.
        #[arg(long, default_value_t = 12)]
        daemons: usize,
        /// Seconds of each idle window (30 or more: statistics are flushed late). Default: 30.
        #[arg(long, default_value_t = 30)]
        idle_secs: u64,
        /// Cache hits drained by all of them, then by one. Default: 20000.
        #[arg(long, default_value_t = 20_000)]
        jobs: u32,
        /// Sessions enqueueing one request per statement in the stream phase. Default: 4.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Requests each of them enqueues. Default: 2500.
        #[arg(long, default_value_t = 2500)]
        per_client: usize,
    },
    /// Figure 7: cancel of a running generation → the next request done, in decode steps.
    CancelRelease {
        /// Cancellations timed. Default: 10.
        #[arg(long, default_value_t = 10)]
        rounds: u32,
        /// Tokens the cancelled generations ask for. Default: 1024.
        #[arg(long, default_value_t = 1024)]
        long_tokens: i32,
    },
    /// Figure 8: generation tokens/s with 0, 1, 2 busy processes beside it, per thread policy.
    Contention {
        /// The raw llama.cpp program for the `raw…` policies (bench/build-llama-raw prints its
        /// path). Default: none (then give only engine policies).
        #[arg(long)]
        raw_bin: Option<PathBuf>,
        /// The GGUF of the raw runs. Default: as for `engine`.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Tokens per prompt. Default: 64.
        #[arg(long, default_value_t = 64)]
        max_tokens: u32,
        /// Policies: `adaptive` (no --threads), a thread count, raw llama.cpp `rawN` (fresh
        /// threads per graph) or `rawN-pollP` (a persistent threadpool with polling level P).
        /// Default: 1,2,adaptive,raw2,raw2-poll0.
        #[arg(long, value_delimiter = ',', default_values_t = ["1", "2", "adaptive", "raw2", "raw2-poll0"].map(String::from))]
        policies: Vec<String>,
        /// Busy process counts. Default: 0,1,2.
        #[arg(long, value_delimiter = ',', default_values_t = [0, 1, 2])]
        busy: Vec<usize>,
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
    /// Figure 7: size of the queue table and its indexes while requests cycle through it
    /// (enqueue, claim, complete, purge with retention 0).
    QueueGrowth {
        /// Requests cycled through. Default: 200000.
        #[arg(long, default_value_t = 200_000)]
        requests: u32,
        /// Requests per round (enqueued in one statement, claimed and completed in one). Default:
        /// 1000.
        #[arg(long, default_value_t = 1000)]
        batch: u32,
        /// A size sample every this many requests. Default: 20000.
        #[arg(long, default_value_t = 20_000)]
        every: u32,
        /// `autovacuum_naptime` of the throwaway cluster, in seconds (autovacuum looks at the
        /// table at most this often). Default: 60, PostgreSQL's own default.
        #[arg(long, default_value_t = 60)]
        naptime: u32,
        /// Requests per second the rounds are paced at, so that the run spans several
        /// autovacuum naptimes; 0 cycles as fast as possible. Default: 0.
        #[arg(long, default_value_t = 0)]
        rate: u32,
    },
    /// Figure 6: single-sequence tokens/s of JSON-constrained vs free decoding, one run each.
    Constrained {
        /// Tokens per prompt. Default: 128.
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        /// Runs of `steadytext bench`, summed. Default: 2.
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
}

/// gemma-3-270m-q4_k_m.gguf in the model directory (STEADYTEXT_MODEL_DIR or
/// ~/.cache/steadytext/models: [`steadytext_api::model_dir`]).
fn default_model() -> Result<PathBuf, steadytext_api::model_dir::NoModelDir> {
    Ok(steadytext_api::model_dir::resolve()?.join("gemma-3-270m-q4_k_m.gguf"))
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
    let env = Env { steadytext_bin, threads, fixed_threads: cli.threads.is_some() };
    match cli.figure {
        Figure::Enqueue { jobs, deep } => enqueue::run(jobs, deep)?,
        Figure::QueueGrowth { requests, batch, every, naptime, rate } => {
            queue_growth::run(requests, batch, every, naptime, rate)?
        }
        Figure::QueueRoundTrip { jobs } => queue_latency::round_trip(&env, jobs)?,
        Figure::DeriveWriteOverhead { singles, bulk } => derive::write_overhead(singles, bulk)?,
        Figure::DeriveFreshness { updates } => derive::freshness(&env, updates)?,
        Figure::DeriveBackfill { rows, raw_bin } => {
            let raw = match raw_bin {
                Some(decode) => Some(derive::RawEmbed {
                    bin: decode.with_file_name("llama-raw-embed"),
                    model: steadytext_api::model_dir::resolve()?.join("all-MiniLM-L6-v2-f32.gguf"),
                }),
                None => None,
            };
            derive::backfill(&env, rows, raw.as_ref())?
        }
        Figure::DeriveEditOneParagraph => derive::edit_one_paragraph(&env)?,
        Figure::QueueWakeup { samples } => queue_latency::wake(samples)?,
        Figure::DrainGenerate { jobs, max_tokens, workers, concurrency } => {
            drain::run(&env, Workload::Generate { max_tokens }, jobs, &workers, &concurrency)?
        }
        Figure::DrainEmbed { jobs, workers, concurrency } => {
            drain::run(&env, Workload::Embed, jobs, &workers, &concurrency)?
        }
        Figure::DrainCached { jobs, concurrency } => drain::run_cached(&env, jobs, concurrency)?,
        Figure::UiPageCost { rows, samples } => ui_page_cost::run(&env, rows, samples)?,
        Figure::Sync { hits, misses, max_tokens } => {
            sync_latency::run(&env, hits, misses, max_tokens)?
        }
        Figure::SharedCache { requests, max_tokens } => {
            shared_cache::run(&env, requests, max_tokens)?
        }
        Figure::MixedLatency { longs, long_tokens, shorts, concurrency, max_batch } => {
            mixed_latency::run(&env, Mix { longs, long_tokens, shorts, concurrency, max_batch })?
        }
        Figure::LongPromptStall { trials } => long_prompt_stall::run(&env, trials)?,
        Figure::ManyDaemons { daemons, idle_secs, jobs, clients, per_client } => {
            many_daemons::run(&env, daemons, idle_secs, jobs, clients, per_client)?
        }
        Figure::CancelRelease { rounds, long_tokens } => {
            cancel_release::run(&env, rounds, long_tokens)?
        }
        Figure::Contention { raw_bin, model, max_tokens, policies, busy } => {
            let target = Target { raw_bin, model: model.map_or_else(default_model, Ok)? };
            contention::run(&env, &target, max_tokens, &policies, &busy)?
        }
        Figure::Engine { raw_bin, model, max_tokens, rounds } => {
            let model = model.map_or_else(default_model, Ok)?;
            engine::run(&env, &raw_bin, &model, max_tokens, rounds)?
        }
        Figure::Constrained { max_tokens, rounds } => constrained::run(&env, max_tokens, rounds)?,
    }
    Ok(())
}
