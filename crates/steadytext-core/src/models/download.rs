//! Downloads of registry models from Hugging Face-style servers
//! (`{endpoint}/{repo}/resolve/{revision}/{file}`): streamed into `<file>.part`, resumed with
//! an HTTP `Range` request when a `.part` file exists (also within one call, when the
//! connection drops mid-body), checked against the registry's sha256 when it has one, and
//! renamed into place only when complete; concurrent fetches of one file take turns on a
//! `<file>.lock` lock, so only the first downloads. Downloads are off unless allowed
//! (`STEADYTEXT_ALLOW_DOWNLOAD=1` or `--allow-download`). Progress goes to a [`ProgressSink`]
//! the caller supplies (the `steadytext` binary renders it; this crate never writes to a
//! terminal).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::models::ModelDir;
use crate::registry::{RegistryEntry, Source};
use crate::CoreError;

/// Environment variable allowing downloads (`1`, `true` or `yes`).
pub const ALLOW_ENV: &str = "STEADYTEXT_ALLOW_DOWNLOAD";
/// Environment variable overriding the Hugging Face endpoint (e.g. a mirror or a test server).
pub const ENDPOINT_ENV: &str = "STEADYTEXT_HF_ENDPOINT";
/// The default endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Requests made for one file before giving up when the connection keeps dropping (each
/// retry resumes where the previous one stopped).
pub const MAX_ATTEMPTS: u32 = 3;
/// A read that receives nothing for this long fails the attempt.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether downloads may happen, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadPolicy {
    /// Downloads are allowed.
    pub allow: bool,
    /// Base URL of the Hugging Face-style server, without trailing slash.
    pub endpoint: String,
}

impl DownloadPolicy {
    /// The policy of the environment: [`ALLOW_ENV`] and [`ENDPOINT_ENV`].
    pub fn from_env() -> Self {
        Self::from_values(std::env::var_os(ALLOW_ENV), std::env::var_os(ENDPOINT_ENV))
    }

    /// The rule of [`DownloadPolicy::from_env`] with the values passed in.
    pub fn from_values(allow: Option<OsString>, endpoint: Option<OsString>) -> Self {
        let allow = allow.is_some_and(|v| {
            matches!(v.to_string_lossy().to_ascii_lowercase().as_str(), "1" | "true" | "yes")
        });
        let endpoint = endpoint
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string_lossy().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self { allow, endpoint }
    }

    /// This policy, with downloads also allowed when `allow` is true (a command-line flag).
    pub fn or_allow(mut self, allow: bool) -> Self {
        self.allow |= allow;
        self
    }
}

/// The download URL of a file of a Hugging Face repository.
pub fn hf_url(endpoint: &str, repo: &str, revision: &str, file: &str) -> String {
    format!("{}/{repo}/resolve/{revision}/{file}", endpoint.trim_end_matches('/'))
}

/// Where a download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the file received so far, those of a resumed `.part` file included.
    pub done: u64,
    /// The file's size, when the server announced it (`Content-Length`, `Content-Range`).
    pub total: Option<u64>,
}

/// Receives the progress of a download, on the downloading thread.
pub trait ProgressSink {
    /// Bytes arrived (or a request starts, `progress.done` bytes into the file): called when
    /// each request's response arrives and after every chunk of its body is written.
    fn received(&mut self, progress: Progress);
    /// Every byte arrived; the file's sha256 is being checked (a pass over the whole file).
    fn verifying(&mut self) {}
}

/// A [`ProgressSink`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn received(&mut self, _: Progress) {}
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The file was already in the model directory; nothing was requested.
    AlreadyPresent(PathBuf),
    /// The file was downloaded.
    Downloaded(Download),
}

/// A completed download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The final file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Bytes already in the `.part` file when this call started (0: fresh download).
    pub resumed_from: u64,
    /// HTTP requests made (more than one when the connection dropped and was resumed).
    pub requests: u32,
    /// Whether the file's sha256 was checked against the registry.
    pub verified: bool,
}

/// Makes sure the file of `entry` is in `dir`, downloading it if `policy` allows. Packaged
/// models are never downloaded ([`CoreError::NotDownloadable`] when missing); with downloads
/// disabled a missing file is [`CoreError::DownloadsDisabled`] and no request is made.
pub fn fetch(
    entry: &RegistryEntry,
    dir: &ModelDir,
    policy: &DownloadPolicy,
) -> Result<FetchOutcome, CoreError> {
    fetch_with_progress(entry, dir, policy, &mut NoProgress)
}

/// [`fetch`], reporting the download's progress to `progress`.
pub fn fetch_with_progress(
    entry: &RegistryEntry,
    dir: &ModelDir,
    policy: &DownloadPolicy,
    progress: &mut dyn ProgressSink,
) -> Result<FetchOutcome, CoreError> {
    let dest = dir.path().join(entry.file_name);
    if dest.exists() {
        return Ok(FetchOutcome::AlreadyPresent(dest));
    }
    let Source::HuggingFace { repo, revision } = entry.source else {
        return Err(CoreError::NotDownloadable { name: entry.name.into() });
    };
    let url = hf_url(&policy.endpoint, repo, revision, entry.file_name);
    if !policy.allow {
        return Err(CoreError::DownloadsDisabled {
            name: entry.name.into(),
            dir: dir.path().to_owned(),
            url,
        });
    }
    // One download of a file at a time, across processes: a concurrent fetch of the same file
    // waits here for the first, then finds the file in place.
    let _lock = lock(&dest)?;
    if dest.exists() {
        return Ok(FetchOutcome::AlreadyPresent(dest));
    }
    download_file_with_progress(&url, &dest, entry.sha256, progress).map(FetchOutcome::Downloaded)
}

/// An exclusive lock on `<dest>.lock` (created if missing, left in place), held until the
/// returned file is dropped; blocks while another process or thread holds it.
fn lock(dest: &Path) -> Result<File, CoreError> {
    let path = with_suffix(dest, ".lock");
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|source| CoreError::Io { path: parent.to_owned(), source })?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| CoreError::Io { path: path.clone(), source })?;
    file.lock().map_err(|source| CoreError::Io { path, source })?;
    Ok(file)
}

/// The `.part` file a download of `dest` streams into.
pub fn part_path(dest: &Path) -> PathBuf {
    with_suffix(dest, ".part")
}

/// `dest` with `suffix` appended to its file name.
fn with_suffix(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dest.with_file_name(name)
}

/// Downloads `url` into `dest` through `<dest>.part`, resuming an existing `.part` file with a
/// `Range` request, retrying (and resuming) up to [`MAX_ATTEMPTS`] requests when the body is
/// cut, verifying `sha256` when given (a mismatch removes the `.part` file), and renaming the
/// complete file into place.
pub fn download_file(url: &str, dest: &Path, sha256: Option<&str>) -> Result<Download, CoreError> {
    download_file_with_progress(url, dest, sha256, &mut NoProgress)
}

/// [`download_file`], reporting the download's progress to `progress`.
pub fn download_file_with_progress(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    progress: &mut dyn ProgressSink,
) -> Result<Download, CoreError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CoreError::Io { path, source }
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let part = part_path(dest);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .user_agent(concat!("steadytext/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let resumed_from = part_len(&part);
    let mut requests = 0;
    loop {
        requests += 1;
        let offset = part_len(&part);
        match attempt(&agent, url, &part, offset, progress)? {
            Attempt::Complete => break,
            Attempt::Cut(reason) if requests >= MAX_ATTEMPTS => {
                return Err(CoreError::Http {
                    url: url.into(),
                    reason: format!("{reason} (after {requests} requests; run again to resume)"),
                })
            }
            Attempt::Cut(_) => continue,
        }
    }
    if let Some(expected) = sha256 {
        progress.verifying();
        let actual = crate::models::sha256_file(&part).map_err(io(&part))?;
        if actual != expected {
            let _ = std::fs::remove_file(&part);
            return Err(CoreError::DownloadChecksum {
                url: url.into(),
                actual,
                expected: expected.into(),
            });
        }
    }
    File::open(&part).and_then(|f| f.sync_all()).map_err(io(&part))?;
    std::fs::rename(&part, dest).map_err(io(dest))?;
    let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
    Ok(Download {
        path: dest.to_owned(),
        bytes,
        resumed_from,
        requests,
        verified: sha256.is_some(),
    })
}

/// Outcome of one request.
enum Attempt {
    /// The whole body is in the `.part` file.
    Complete,
    /// The body was cut (or not started) for this reason; the `.part` file holds what arrived.
    Cut(String),
}

fn part_len(part: &Path) -> u64 {
    std::fs::metadata(part).map(|m| m.len()).unwrap_or(0)
}

/// One GET of `url`, appending to `part` from `offset` (a `Range` request when non-zero),
/// reporting each chunk to `progress`.
fn attempt(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    offset: u64,
    progress: &mut dyn ProgressSink,
) -> Result<Attempt, CoreError> {
    let http_err = |reason: String| CoreError::Http { url: url.into(), reason };
    let io = |source| CoreError::Io { path: part.to_owned(), source };
    let mut req = agent.get(url);
    if offset > 0 {
        req = req.header("Range", format!("bytes={offset}-"));
    }
    let resp = match req.call() {
        Ok(resp) => resp,
        // Connection-level failures before any byte of body: retry like a cut body.
        Err(e @ (ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed)) => {
            return Ok(Attempt::Cut(e.to_string()))
        }
        Err(e) => return Err(http_err(e.to_string())),
    };
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    let (append, total) = match status {
        200 => (false, header("content-length").parse().ok()),
        206 => {
            let range = header("content-range");
            if !range.starts_with(&format!("bytes {offset}-")) {
                return Err(http_err(format!(
                    "asked for bytes {offset}- and got Content-Range {range:?}"
                )));
            }
            (true, range.rsplit_once('/').and_then(|(_, total)| total.parse().ok()))
        }
        // The `.part` file is not a prefix the server can continue: start over.
        416 if offset > 0 => {
            std::fs::remove_file(part).map_err(io)?;
            return Ok(Attempt::Cut("416 Range Not Satisfiable; restarting".into()));
        }
        _ => return Err(CoreError::HttpStatus { url: url.into(), status }),
    };
    let mut file =
        if append { OpenOptions::new().append(true).open(part) } else { File::create(part) }
            .map_err(io)?;
    let mut done = if append { offset } else { 0 };
    progress.received(Progress { done, total });
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.flush().map_err(io)?;
                return Ok(Attempt::Cut(e.to_string()));
            }
        };
        file.write_all(&buf[..n]).map_err(io)?;
        done += n as u64;
        progress.received(Progress { done, total });
    }
    file.flush().map_err(io)?;
    Ok(Attempt::Complete)
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_reads_allow_and_endpoint() {
        let p = DownloadPolicy::from_values(None, None);
        assert_eq!(p, DownloadPolicy { allow: false, endpoint: DEFAULT_ENDPOINT.into() });
        let p = DownloadPolicy::from_values(Some("1".into()), Some("http://127.0.0.1:9/".into()));
        assert_eq!(p, DownloadPolicy { allow: true, endpoint: "http://127.0.0.1:9".into() });
        assert!(!DownloadPolicy::from_values(Some("0".into()), None).allow);
        assert!(DownloadPolicy::from_values(Some("TRUE".into()), None).allow);
        assert!(DownloadPolicy::from_values(None, None).or_allow(true).allow);
    }

    #[test]
    fn hf_urls() {
        assert_eq!(
            hf_url(
                "https://huggingface.co/",
                "QuantFactory/Qwen3-Reranker-4B-GGUF",
                "main",
                "a.gguf"
            ),
            "https://huggingface.co/QuantFactory/Qwen3-Reranker-4B-GGUF/resolve/main/a.gguf"
        );
        assert_eq!(part_path(Path::new("/m/a.gguf")), PathBuf::from("/m/a.gguf.part"));
    }
}
