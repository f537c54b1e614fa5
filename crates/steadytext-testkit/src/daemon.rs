//! `steadytext serve` / `steadytext worker` child processes: started with a throwaway cache file
//! and `--ready-file`, waited for through that one readiness signal (with a deadline), killed on
//! drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use steadytext_api::ready::Ready;

/// How long a process may take to load its models and become ready.
pub const READY_DEADLINE: Duration = Duration::from_secs(180);

/// Why a daemon process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The process could not be spawned, or its files not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// It exited, or did not become ready in time.
    #[error("steadytext {command} {reason}; last lines: {tail:?}")]
    NotReady {
        /// `serve` or `worker`.
        command: String,
        /// What happened.
        reason: String,
        /// Its last lines on stderr.
        tail: Vec<String>,
    },
    /// An HTTP request got a status other than 200.
    #[error("GET {path}: {status}")]
    Http {
        /// The requested path.
        path: String,
        /// The status line.
        status: String,
    },
}

/// How to start one `steadytext` process.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// The `steadytext` binary.
    pub bin: PathBuf,
    /// `serve` or `worker`.
    pub command: String,
    /// Arguments after the command.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// llama.cpp threads (`STEADYTEXT_THREADS`); `None`: the daemon's own default (adaptive).
    pub threads: Option<usize>,
    /// Whether to copy its stderr lines to this process's stderr.
    pub echo_stderr: bool,
}

impl Spawn {
    /// `bin command args…` with 2 threads, echoing stderr.
    pub fn new(bin: impl Into<PathBuf>, command: &str, args: &[&str]) -> Self {
        Self {
            bin: bin.into(),
            command: command.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
            threads: Some(2),
            echo_stderr: true,
        }
    }
}

/// A running, ready `steadytext` process.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT` for `serve`; empty for `worker`.
    pub url: String,
    stderr: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the process with a fresh cache file and returns once its ready file appeared
    /// (every listener bound and, when it runs a worker, the worker listening).
    pub fn start(spec: &Spawn) -> Result<Self, DaemonError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| DaemonError::Io { what, source }
        };
        let dir = tempfile::Builder::new()
            .prefix("steadytext-daemon-")
            .tempdir()
            .map_err(io("temp dir"))?;
        let ready_file = dir.path().join("ready.json");
        let mut command = Command::new(&spec.bin);
        command.env_remove("STEADYTEXT_THREADS");
        if let Some(threads) = spec.threads {
            command.env("STEADYTEXT_THREADS", threads.to_string());
        }
        let mut child = command
            .arg(&spec.command)
            .args(&spec.args)
            .arg("--ready-file")
            .arg(&ready_file)
            .env("STEADYTEXT_CACHE_FILE", dir.path().join("cache.redb"))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(&format!("start {}", spec.bin.display())))?;
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let echo = spec.echo_stderr;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[steadytext] {line}");
                }
                let _ = tx.send(line);
            }
        });
        let mut daemon = Self { child, url: String::new(), stderr: rx, _dir: dir };
        let ready = daemon.wait_ready(&ready_file, &spec.command)?;
        daemon.url = ready.url.unwrap_or_default();
        Ok(daemon)
    }

    /// Polls for the ready file until [`READY_DEADLINE`], failing early if the process exits.
    fn wait_ready(&mut self, path: &Path, command: &str) -> Result<Ready, DaemonError> {
        let start = Instant::now();
        let not_ready = |daemon: &mut Self, reason: String| {
            let tail: Vec<String> = daemon.stderr.try_iter().collect();
            let tail = tail[tail.len().saturating_sub(20)..].to_vec();
            DaemonError::NotReady { command: command.to_owned(), reason, tail }
        };
        loop {
            // the daemon renames a complete file into place, so a file that exists parses
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Ok(ready) = serde_json::from_str::<Ready>(&text) {
                    return Ok(ready);
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(not_ready(self, format!("exited ({status}) before it was ready")));
            }
            if start.elapsed() > READY_DEADLINE {
                return Err(not_ready(self, format!("not ready within {READY_DEADLINE:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the process logs a line containing `needle` (lines logged before this call
    /// count too), panicking after `deadline`.
    pub fn wait_for_log(&mut self, needle: &str, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            let left = deadline
                .checked_sub(start.elapsed())
                .unwrap_or_else(|| panic!("steadytext did not log {needle:?} within {deadline:?}"));
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("steadytext exited before logging {needle:?}")
                }
            }
        }
    }

    /// One raw HTTP exchange with a `serve` daemon (for endpoints the typed client does not
    /// cover); returns the status and the body. The body is JSON unless `headers` name another
    /// `Content-Type`.
    pub fn request(&self, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.url.trim_start_matches("http://")).unwrap();
        let typed = headers.iter().any(|h| h.to_ascii_lowercase().starts_with("content-type:"));
        let json = if typed { "" } else { "Content-Type: application/json\r\n" };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             {json}Content-Length: {}\r\n",
            body.len()
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split(' ').nth(1).unwrap().parse().unwrap();
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    /// The body of `GET path` on a `serve` daemon (e.g. `/metrics`); a status other than 200
    /// is an error.
    pub fn get(&self, path: &str) -> Result<String, DaemonError> {
        let io = |what: &str| {
            let what = format!("GET {path}: {what}");
            move |source| DaemonError::Io { what, source }
        };
        let mut s =
            TcpStream::connect(self.url.trim_start_matches("http://")).map_err(io("connect"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).map_err(io("send"))?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(io("read"))?;
        match out.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
            _ => Err(DaemonError::Http {
                path: path.to_owned(),
                status: out.lines().next().unwrap_or_default().to_owned(),
            }),
        }
    }

    /// The value of the counter `name` in `/metrics`, summed over its series (0 when it has
    /// none yet).
    pub fn counter(&self, name: &str) -> Result<f64, DaemonError> {
        let text = self.get("/metrics")?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| *series == name || series.starts_with(&format!("{name}{{")))
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum())
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (with a deadline) for a clean exit; returns its exit status.
    pub fn terminate(&mut self, deadline: Duration) -> std::process::ExitStatus {
        // SAFETY: kill(2) with a valid pid and signal number.
        unsafe { kill(self.child.id() as i32, 15) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < deadline, "steadytext did not exit within {deadline:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, panicking after `deadline`.
pub fn wait_until<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
