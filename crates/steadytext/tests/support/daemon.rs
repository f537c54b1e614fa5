//! A `steadytext serve` / `steadytext worker` child process for tests: started with a fresh
//! cache file, waited for with a deadline, killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running daemon process.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT` for `serve`; empty for `worker`.
    pub url: String,
    /// Lines the process wrote to stderr so far are forwarded here.
    stderr: mpsc::Receiver<String>,
    _cache_dir: tempfile::TempDir,
}

impl Daemon {
    /// `steadytext serve --port 0` plus `extra` args; returns once it listens.
    pub fn serve(extra: &[&str]) -> Self {
        Self::serve_with_env(extra, &[])
    }

    /// [`Daemon::serve`] with extra environment variables.
    pub fn serve_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn("serve", &[&["--port", "0"], extra].concat(), env, true)
    }

    /// `steadytext worker` plus `extra` args; returns once it listens on steadytext_jobs.
    pub fn worker(extra: &[&str]) -> Self {
        Self::spawn("worker", extra, &[], false)
    }

    fn spawn(command: &str, args: &[&str], env: &[(&str, &str)], http: bool) -> Self {
        let cache_dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_steadytext"))
            .arg(command)
            .args(args)
            .env("STEADYTEXT_CACHE_FILE", cache_dir.path().join("cache.redb"))
            .env("STEADYTEXT_THREADS", "2")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("steadytext starts");
        let (out_tx, out_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(line);
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[steadytext] {line}");
                let _ = err_tx.send(line);
            }
        });
        let mut daemon = Self { child, url: String::new(), stderr: err_rx, _cache_dir: cache_dir };
        if http {
            let line = out_rx
                .recv_timeout(Duration::from_secs(120))
                .expect("steadytext serve prints its address");
            daemon.url = line.rsplit(' ').next().unwrap().to_owned();
            assert!(daemon.url.starts_with("http://"), "{line}");
        } else {
            daemon.wait_for_log("listening on steadytext_jobs", Duration::from_secs(120));
        }
        daemon
    }

    /// Waits until the process logs a line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            let left = deadline
                .checked_sub(start.elapsed())
                .unwrap_or_else(|| panic!("steadytext did not log {needle:?} within {deadline:?}"));
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("steadytext exited before logging {needle:?}")
                }
            }
        }
    }

    /// One raw HTTP exchange with a `serve` daemon (for endpoints the typed client does not
    /// cover); returns the status and the body.
    pub fn request(&self, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.url.trim_start_matches("http://")).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
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
