//! Figure 8: generation under CPU contention. `steadytext bench --generate-only` (8 prompts
//! decoded one at a time, then as one batch of 8) runs with 0, 1 and 2 busy processes beside it
//! (`yes > /dev/null`, as a busy PostgreSQL backend or a build would be), once per thread
//! policy: fixed counts (`--threads N`) and the adaptive default (no `--threads`); and raw
//! llama.cpp (`bench/llama-raw/decode.cpp`, same prompts and definitions) on N threads started
//! per graph (`rawN`, llama.cpp's default) or on a persistent ggml threadpool with polling level
//! P (`rawN-pollP`; P = 0: its threads sleep between graphs instead of spinning). Each line gives
//! tokens/s and their ratio to the same policy on the idle machine and to fixed `--threads 2`
//! (the engine's default before the adaptive policy) on the idle machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::error::{BenchError, Result};
use crate::report::{field_of, Line};
use crate::setup::Env;

/// `yes > /dev/null` processes, killed on drop.
struct Busy(Vec<Child>);

impl Busy {
    fn start(n: usize) -> Result<Self> {
        let children = (0..n)
            .map(|_| {
                Command::new("yes")
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(BenchError::io("start `yes`"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Busy(children))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What runs: the engine or raw llama.cpp, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// The raw llama.cpp program (needed for `raw…` policies).
    pub raw_bin: Option<PathBuf>,
    /// The GGUF raw llama.cpp loads.
    pub model: PathBuf,
}

/// Runs every policy (`adaptive`, a thread count, `rawN`, `rawN-pollP`) under each number of
/// busy processes and prints one line per run.
pub fn run(
    env: &Env,
    target: &Target,
    max_tokens: u32,
    policies: &[String],
    busy: &[usize],
) -> Result<()> {
    // (policy, busy) → (single, batch8) tokens/s
    let mut got: HashMap<(String, usize), (f64, f64)> = HashMap::new();
    for &b in busy {
        let _load = Busy::start(b)?;
        for policy in policies {
            let (single, batch8) = match policy.strip_prefix("raw") {
                Some(raw) => {
                    let bin = target.raw_bin.as_deref().ok_or_else(|| {
                        BenchError::Process(format!("policy {policy} needs --raw-bin"))
                    })?;
                    raw_bench(bin, &target.model, raw, max_tokens)?
                }
                None => bench(env, policy, max_tokens)?,
            };
            got.insert((policy.clone(), b), (single, batch8));
            let idle = got.get(&(policy.clone(), 0)).copied();
            let fixed2 = got.get(&("2".to_owned(), 0)).copied();
            let ratio = |v: f64, base: Option<f64>| base.map_or(f64::NAN, |b| v / b);
            println!(
                "{}",
                Line::new("contention")
                    .field("threads", policy)
                    .field("busy_processes", b)
                    .field("max_tokens", max_tokens)
                    .num("single_tokens_per_s", single, 1)
                    .num("batch8_tokens_per_s", batch8, 1)
                    .num("single_vs_idle", ratio(single, idle.map(|i| i.0)), 2)
                    .num("batch8_vs_idle", ratio(batch8, idle.map(|i| i.1)), 2)
                    .num("single_vs_fixed2_idle", ratio(single, fixed2.map(|i| i.0)), 2)
                    .num("batch8_vs_fixed2_idle", ratio(batch8, fixed2.map(|i| i.1)), 2)
                    .with_load()
            );
        }
    }
    Ok(())
}

/// One `steadytext bench --generate-only` run; returns (single, batch-of-8) tokens/s.
fn bench(env: &Env, policy: &str, max_tokens: u32) -> Result<(f64, f64)> {
    let mut cmd = Command::new(&env.steadytext_bin);
    cmd.args(["bench", "--generate-only", "--max-tokens", &max_tokens.to_string()]);
    cmd.env_remove("STEADYTEXT_THREADS");
    if policy != "adaptive" {
        cmd.args(["--threads", policy]);
    }
    let out = cmd.output().map_err(BenchError::io("run steadytext bench"))?;
    if !out.status.success() {
        return Err(BenchError::Process(format!(
            "steadytext bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok((tps(&text, "bench generate_single ")?, tps(&text, "bench generate_batch8 ")?))
}

/// One raw llama.cpp run for `spec` = `N` or `N-pollP`; returns (single, batch-of-8) tokens/s.
fn raw_bench(bin: &Path, model: &Path, spec: &str, max_tokens: u32) -> Result<(f64, f64)> {
    let (threads, poll) = match spec.split_once("-poll") {
        Some((t, p)) => (t, Some(p)),
        None => (spec, None),
    };
    let mut cmd = Command::new(bin);
    cmd.arg(model).arg(threads).arg(max_tokens.to_string());
    if let Some(poll) = poll {
        cmd.arg(poll);
    }
    let out = cmd.output().map_err(BenchError::io(format!("run {}", bin.display())))?;
    if !out.status.success() {
        return Err(BenchError::Process(format!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok((tps(&text, "raw_llama_cpp ")?, tps(&text, "raw_llama_cpp_batch8 ")?))
}

/// The `tokens_per_s` of the line starting with `prefix`.
fn tps(text: &str, prefix: &str) -> Result<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| field_of(l, "tokens_per_s"))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::Process(format!("no {prefix}line in {text:?}")))
}
