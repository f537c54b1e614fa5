//! How many CPU threads llama.cpp computes with (generation and encoders alike): a fixed
//! count, or (the default of `steadytext`'s commands) up to a maximum, fewer while other
//! processes keep cores busy.
//!
//! Why adaptive: ggml's threads meet at a barrier after every node of the compute graph (a few
//! hundred per decode step) and wait there by spinning — `ggml_barrier` never yields or sleeps.
//! (ggml's threadpool `poll` level only governs how a pooled thread waits for the *next* graph;
//! llama.cpp without an attached threadpool starts fresh threads for every graph anyway, so it
//! cannot help.) When another process takes a core, one of the threads is descheduled and the
//! others spin until it runs again: on 2 cores with two busy processes beside it, 2 threads
//! decoded at a fraction of their idle speed while 1 thread kept its fair share (figures in
//! bench/README.md, `contention`; encoders suffered even more: 40× slower embeddings with 2
//! threads on a loaded 2-core machine). So before each decode call (and each encoder call) the
//! engine estimates the cores other processes keep busy (from `/proc/stat`, minus this
//! process's own CPU time) and uses the free ones, at least one: the full count on an idle
//! machine, one thread beside a busy PostgreSQL. Outputs do not depend on the thread count (the companion-row rules of
//! [`crate::decode_batch`] keep every attention off ggml's split-KV path; encoders run without
//! flash attention; both tested).
//!
//! The estimate is machine-wide (`/proc/stat`); in a container limited by a CPU quota it sees
//! the host, and a fixed `--threads` is the better choice there.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;

/// How many threads llama.cpp computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadPolicy {
    /// Always this many (at least 1).
    Fixed(usize),
    /// Up to this many (at least 1), fewer while other processes keep cores busy.
    Adaptive(usize),
}

impl From<usize> for ThreadPolicy {
    fn from(threads: usize) -> Self {
        ThreadPolicy::Fixed(threads)
    }
}

impl ThreadPolicy {
    /// The largest thread count the policy may use, clamped to llama.cpp's 1–256.
    pub fn max(self) -> i32 {
        let (ThreadPolicy::Fixed(n) | ThreadPolicy::Adaptive(n)) = self;
        n.clamp(1, 256) as i32
    }

    /// The thread count to use now.
    pub fn now(self) -> i32 {
        match self {
            ThreadPolicy::Fixed(_) => self.max(),
            ThreadPolicy::Adaptive(_) => {
                free_cores().map_or(self.max(), |free| threads_for(free, self.max()))
            }
        }
    }
}

/// Threads for `free` free cores: the whole free cores, rounding a core that is 70% free up,
/// between 1 and `max`.
fn threads_for(free: f64, max: i32) -> i32 {
    ((free + 0.3).floor() as i32).clamp(1, max)
}

/// Shortest window over which the machine's load is measured (CPU times tick at 100 Hz).
const WINDOW: Duration = Duration::from_millis(300);

/// CPU time counters at one moment, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    /// Busy time of all cores (user, nice, system, irq, softirq, steal).
    busy: u64,
    /// Busy plus idle time of all cores.
    total: u64,
    /// This process's user plus system time.
    own: u64,
    cores: usize,
}

/// The latest sample and the free cores measured over the window before it.
static LOAD: Mutex<Option<(Sample, Option<f64>)>> = Mutex::new(None);

/// Cores not kept busy by other processes, measured over the last [`WINDOW`] or more (the
/// first call starts the measurement and returns `None`; so does a machine without
/// `/proc/stat`).
fn free_cores() -> Option<f64> {
    let mut load = LOAD.lock().unwrap_or_else(|p| p.into_inner());
    match *load {
        Some((last, free)) if last.at.elapsed() < WINDOW => free,
        previous => {
            let now = sample()?;
            let free = previous.and_then(|(last, _)| free_between(&last, &now));
            *load = Some((now, free.or(previous.and_then(|(_, f)| f))));
            free
        }
    }
}

/// Cores not used by other processes between two samples.
fn free_between(a: &Sample, b: &Sample) -> Option<f64> {
    let total = b.total.checked_sub(a.total).filter(|t| *t > 0)? as f64;
    let busy = b.busy.saturating_sub(a.busy) as f64;
    let own = b.own.saturating_sub(a.own) as f64;
    let others = ((busy - own) / total).clamp(0.0, 1.0);
    Some(b.cores as f64 * (1.0 - others))
}

/// Reads `/proc/stat` and `/proc/self/stat`.
fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse(&stat, &own, Instant::now())
}

/// A [`Sample`] from the texts of `/proc/stat` and `/proc/self/stat`.
fn parse(stat: &str, own: &str, at: Instant) -> Option<Sample> {
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = cpu.split_whitespace().map(|v| v.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user and nice)
    let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = f[..] else { return None };
    let busy = user + nice + system + irq + softirq + steal;
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    // the fields after the command name, which is in parentheses and may contain spaces;
    // utime and stime are fields 14 and 15, i.e. the 12th and 13th after the name
    let after = own.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11);
    let (utime, stime): (u64, u64) = (fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
    Some(Sample { at, busy, total: busy + idle + iowait, own: utime + stime, cores: cores.max(1) })
}

/// Sets the thread count of a live context (llama-cpp-2 0.1.160 has no setter for it).
///
/// The context's `llama_context` pointer is read from its `Debug` text, the only place
/// llama-cpp-2 shows it (`LlamaContext { context: 0x… }`), and checked against the context
/// before use: `llama_n_ctx` must give the context's size and `llama_n_threads` the count
/// `current` it runs with. `llama_set_n_threads` only stores the two counts in the context's
/// parameters, read by its next decode call; the caller holds the context exclusively. Returns
/// false, changing nothing, if the pointer cannot be read or does not check out.
pub(crate) fn set_context_threads(ctx: &mut LlamaContext<'_>, current: i32, threads: i32) -> bool {
    let text = format!("{ctx:?}");
    let Some(addr) = text
        .split_once("context: 0x")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_hexdigit()).next())
        .and_then(|hex| usize::from_str_radix(hex, 16).ok())
    else {
        return false;
    };
    let ptr = addr as *mut llama_cpp_sys_2::llama_context;
    // SAFETY: `addr` is the context's own pointer, printed by its Debug impl; it is only
    // dereferenced by llama.cpp after the two reads below confirm it, while `ctx` (alive and
    // exclusively borrowed) owns it.
    unsafe {
        if ptr.is_null()
            || llama_cpp_sys_2::llama_n_ctx(ptr) != ctx.n_ctx()
            || llama_cpp_sys_2::llama_n_threads(ptr) != current
        {
            return false;
        }
        llama_cpp_sys_2::llama_set_n_threads(ptr, threads, threads);
        llama_cpp_sys_2::llama_n_threads(ptr) == threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 800 10 5 5 0 0 0\ncpu0 50 0 25 400 5 2 3 0 0 0\n\
                        cpu1 50 0 25 400 5 3 2 0 0 0\nintr 1 2 3\n";

    fn own(utime: u64, stime: u64) -> String {
        format!("4242 (steady text) S 1 2 3 4 5 6 7 8 9 10 {utime} {stime} 0 0 20 0 3 0")
    }

    #[test]
    fn parses_the_aggregate_line_the_core_count_and_own_time() {
        let s = parse(STAT, &own(30, 7), Instant::now()).unwrap();
        assert_eq!((s.busy, s.total, s.own, s.cores), (160, 970, 37, 2));
        assert!(parse("intr 1 2", &own(1, 1), Instant::now()).is_none());
        assert!(parse(STAT, "garbage", Instant::now()).is_none());
    }

    #[test]
    fn free_cores_exclude_what_other_processes_used() {
        let at = Instant::now();
        let a = Sample { at, busy: 1000, total: 2000, own: 100, cores: 2 };
        // 200 ticks of 2 cores pass: 120 busy, 60 of them ours → others used 30% of the machine
        let b = Sample { at, busy: 1120, total: 2200, own: 160, cores: 2 };
        assert!((free_between(&a, &b).unwrap() - 1.4).abs() < 1e-9);
        // all busy time is ours: both cores are free
        let c = Sample { at, busy: 1200, total: 2200, own: 300, cores: 2 };
        assert!((free_between(&a, &c).unwrap() - 2.0).abs() < 1e-9);
        assert!(free_between(&b, &a).is_none(), "no time passed");
    }

    #[test]
    fn threads_follow_the_free_cores_between_one_and_the_maximum() {
        assert_eq!(threads_for(2.0, 2), 2);
        assert_eq!(threads_for(1.8, 2), 2);
        assert_eq!(threads_for(1.6, 2), 1, "a core two thirds taken is not free");
        assert_eq!(threads_for(0.3, 2), 1);
        assert_eq!(threads_for(7.9, 4), 4);
        assert_eq!(ThreadPolicy::Fixed(3).now(), 3);
        assert_eq!(ThreadPolicy::Fixed(0).max(), 1);
        assert_eq!(ThreadPolicy::from(2), ThreadPolicy::Fixed(2));
    }
}
