//! `steadytext serve` / `steadytext worker` child processes: started with a throwaway cache
//! file, waited for with a deadline, killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};

/// How long a process may take to load its models and report readiness.
const READY_DEADLINE: Duration = Duration::from_secs(180);

/// A running `steadytext` process.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT` for `serve`; empty for `worker`.
    pub url: String,
    _cache_dir: tempfile::TempDir,
}

/// How to start one `steadytext` process.
#[derive(Debug, Clone)]
pub struct Spawn<'a> {
    /// The `steadytext` binary.
    pub bin: &'a Path,
    /// `serve` or `worker`.
    pub command: &'a str,
    /// Arguments after the command.
    pub args: Vec<String>,
    /// llama.cpp threads (`STEADYTEXT_THREADS`).
    pub threads: usize,
    /// Whether the process runs a queue worker (then readiness includes its LISTEN).
    pub runs_worker: bool,
}

impl Daemon {
    /// Starts the process and returns once it is ready: `serve` printed its address and, when it
    /// runs a worker, the worker logged `listening on steadytext_jobs`.
    pub fn start(spec: &Spawn<'_>) -> Result<Self> {
        let cache_dir = tempfile::Builder::new()
            .prefix("steadytext-bench-cache-")
            .tempdir()
            .map_err(BenchError::io("create cache dir"))?;
        let mut child = Command::new(spec.bin)
            .arg(spec.command)
            .args(&spec.args)
            .env("STEADYTEXT_CACHE_FILE", cache_dir.path().join("cache.redb"))
            .env("STEADYTEXT_THREADS", spec.threads.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(BenchError::io(format!("start {}", spec.bin.display())))?;
        let (tx, rx) = mpsc::channel::<(bool, String)>();
        let out = child.stdout.take().expect("stdout is piped");
        let out_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let _ = out_tx.send((true, line));
            }
        });
        let err = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                if std::env::var_os("BENCH_VERBOSE").is_some() {
                    eprintln!("[steadytext] {line}");
                }
                let _ = tx.send((false, line));
            }
        });
        let mut daemon = Self { child, url: String::new(), _cache_dir: cache_dir };
        let mut need_url = spec.command == "serve";
        let mut need_worker = spec.runs_worker;
        let start = Instant::now();
        let mut tail: Vec<String> = Vec::new();
        while need_url || need_worker {
            let left = READY_DEADLINE.checked_sub(start.elapsed()).ok_or_else(|| {
                BenchError::Timeout(format!("steadytext {} not ready: {tail:?}", spec.command))
            })?;
            match rx.recv_timeout(left) {
                Ok((true, line)) if line.contains("listening on http") => {
                    line.rsplit(' ').next().unwrap_or_default().clone_into(&mut daemon.url);
                    need_url = false;
                }
                Ok((false, line)) if line.contains("listening on steadytext_jobs") => {
                    need_worker = false;
                }
                Ok((_, line)) => {
                    tail.push(line);
                    if tail.len() > 20 {
                        tail.remove(0);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(BenchError::Process(format!(
                        "steadytext {} exited before it was ready: {tail:?}",
                        spec.command
                    )))
                }
            }
        }
        Ok(daemon)
    }
}

impl Daemon {
    /// The body of `GET path` on a `serve` daemon (e.g. `/metrics`).
    pub fn get(&self, path: &str) -> Result<String> {
        let addr = self.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).map_err(BenchError::io(format!("connect {addr}")))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).map_err(BenchError::io("send a request"))?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(BenchError::io("read a response"))?;
        match out.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
            _ => Err(BenchError::Process(format!(
                "GET {path}: {}",
                out.lines().next().unwrap_or("")
            ))),
        }
    }

    /// The value of the counter `name` in `/metrics` (summed over its series; 0 when it has
    /// none yet).
    pub fn counter(&self, name: &str) -> Result<f64> {
        let text = self.get("/metrics")?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| *series == name || series.starts_with(&format!("{name}{{")))
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
