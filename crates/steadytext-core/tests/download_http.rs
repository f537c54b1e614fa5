//! Downloads against a local HTTP server started by each test: full download, resume after a
//! cut connection and from an existing `.part` file, concurrent fetches of one file, checksum
//! mismatch, HTTP errors, downloads disabled (no request at all), and the progress reported.

use std::collections::HashMap;
use std::path::Path;

use steadytext_core::download::{
    download_file, download_file_with_progress, fetch, fetch_with_progress, part_path, sha256_hex,
    DownloadPolicy, FetchOutcome, Progress, ProgressSink,
};
use steadytext_core::models::ModelDir;
use steadytext_core::registry::{ModelSet, RegistryEntry, Role, Source};
use steadytext_core::CoreError;
use steadytext_testkit::file_server::{Served, Server};

/// Deterministic pseudo-random bytes (xorshift).
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn entry(file_name: &'static str, sha256: Option<String>) -> RegistryEntry {
    RegistryEntry {
        name: "test-model",
        role: Role::Rerank,
        set: ModelSet::Full,
        file_name,
        sha256: sha256.map(|s| &*Box::leak(s.into_boxed_str())),
        source: Source::HuggingFace { repo: "acme/test-GGUF", revision: "main" },
    }
}

const URL_PATH: &str = "/acme/test-GGUF/resolve/main/model.gguf";

fn policy(server: &Server) -> DownloadPolicy {
    DownloadPolicy { allow: true, endpoint: server.base.clone() }
}

fn one_file(bytes: &[u8], cut_after: Option<usize>) -> HashMap<String, Served> {
    HashMap::from([(URL_PATH.to_string(), Served { bytes: bytes.to_vec(), cut_after })])
}

fn no_partial_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".part"))
}

#[test]
fn full_download_is_verified_and_renamed_into_place() {
    let bytes = payload(300_000);
    let server = Server::start(one_file(&bytes, None));
    let dir = tempfile::tempdir().unwrap();
    let md = ModelDir::new(dir.path());
    let e = entry("model.gguf", Some(sha256_hex(&bytes)));
    let FetchOutcome::Downloaded(d) = fetch(&e, &md, &policy(&server)).unwrap() else {
        panic!("expected a download")
    };
    assert_eq!(d.path, dir.path().join("model.gguf"));
    assert_eq!((d.bytes, d.resumed_from, d.requests, d.verified), (300_000, 0, 1, true));
    assert_eq!(std::fs::read(&d.path).unwrap(), bytes);
    assert!(no_partial_files(dir.path()));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, URL_PATH);
    assert_eq!(seen[0].range, None);
    // Present now: no second request.
    assert_eq!(
        fetch(&e, &md, &policy(&server)).unwrap(),
        FetchOutcome::AlreadyPresent(dir.path().join("model.gguf"))
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn concurrent_fetches_of_one_file_download_it_once() {
    let bytes = payload(2_000_000);
    let server = Server::start(one_file(&bytes, None));
    let dir = tempfile::tempdir().unwrap();
    let e = entry("model.gguf", Some(sha256_hex(&bytes)));
    let start = std::sync::Barrier::new(4);
    let outcomes: Vec<FetchOutcome> = std::thread::scope(|scope| {
        let fetches: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let md = ModelDir::new(dir.path());
                    start.wait();
                    fetch(&e, &md, &policy(&server)).unwrap()
                })
            })
            .collect();
        fetches.into_iter().map(|f| f.join().unwrap()).collect()
    });
    let downloads = outcomes.iter().filter(|o| matches!(o, FetchOutcome::Downloaded(_))).count();
    assert_eq!(downloads, 1, "{outcomes:?}");
    assert_eq!(server.seen().len(), 1, "one request in all");
    assert_eq!(std::fs::read(dir.path().join("model.gguf")).unwrap(), bytes);
    assert!(no_partial_files(dir.path()));
}

#[test]
fn a_cut_connection_is_resumed_with_a_range_request() {
    let bytes = payload(500_000);
    let server = Server::start(one_file(&bytes, Some(123_457)));
    let dir = tempfile::tempdir().unwrap();
    let e = entry("model.gguf", Some(sha256_hex(&bytes)));
    let FetchOutcome::Downloaded(d) =
        fetch(&e, &ModelDir::new(dir.path()), &policy(&server)).unwrap()
    else {
        panic!("expected a download")
    };
    assert_eq!(d.requests, 2);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    let range = seen[1].range.as_deref().expect("second request carries a Range header");
    let offset: usize =
        range.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')).unwrap().parse().unwrap();
    assert!(offset > 0 && offset <= 123_457, "{range}");
    assert_eq!(steadytext_core::models::sha256_file(&d.path).unwrap(), sha256_hex(&bytes));
    assert!(no_partial_files(dir.path()));
}

#[test]
fn an_existing_part_file_is_resumed() {
    let bytes = payload(200_000);
    let server = Server::start(one_file(&bytes, None));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.gguf");
    std::fs::write(part_path(&dest), &bytes[..70_000]).unwrap();
    let url = format!("{}{URL_PATH}", server.base);
    let d = download_file(&url, &dest, Some(&sha256_hex(&bytes))).unwrap();
    assert_eq!((d.resumed_from, d.requests, d.bytes), (70_000, 1, 200_000));
    assert_eq!(server.seen()[0].range.as_deref(), Some("bytes=70000-"));
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
}

#[test]
fn a_checksum_mismatch_is_a_typed_error_and_leaves_no_file() {
    let bytes = payload(50_000);
    let server = Server::start(one_file(&bytes, None));
    let dir = tempfile::tempdir().unwrap();
    let e = entry("model.gguf", Some("00".repeat(32)));
    let err = fetch(&e, &ModelDir::new(dir.path()), &policy(&server)).unwrap_err();
    match &err {
        CoreError::DownloadChecksum { actual, expected, .. } => {
            assert_eq!(actual, &sha256_hex(&bytes));
            assert_eq!(expected, &"00".repeat(32));
        }
        other => panic!("expected DownloadChecksum, got {other}"),
    }
    assert!(!dir.path().join("model.gguf").exists());
    assert!(no_partial_files(dir.path()));
}

#[test]
fn not_found_is_a_typed_error() {
    let server = Server::start(HashMap::new());
    let dir = tempfile::tempdir().unwrap();
    let e = entry("model.gguf", None);
    let err = fetch(&e, &ModelDir::new(dir.path()), &policy(&server)).unwrap_err();
    assert!(matches!(err, CoreError::HttpStatus { status: 404, .. }), "{err}");
    assert!(err.to_string().contains(URL_PATH), "{err}");
    assert!(!dir.path().join("model.gguf").exists());
}

#[test]
fn disabled_downloads_make_no_request_and_say_how_to_enable_them() {
    let server = Server::start(one_file(b"x", None));
    let dir = tempfile::tempdir().unwrap();
    let e = entry("model.gguf", None);
    let p = DownloadPolicy { allow: false, endpoint: server.base.clone() };
    let err = fetch(&e, &ModelDir::new(dir.path()), &p).unwrap_err();
    assert!(matches!(err, CoreError::DownloadsDisabled { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("STEADYTEXT_ALLOW_DOWNLOAD=1") && msg.contains("--allow-download"),
        "{msg}"
    );
    assert!(msg.contains(URL_PATH), "{msg}");
    assert!(server.seen().is_empty());
}

#[test]
fn packaged_models_are_never_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let gemma = steadytext_core::registry::lookup("gemma-3-270m").unwrap();
    let p = DownloadPolicy { allow: true, endpoint: "http://127.0.0.1:9".into() };
    let err = fetch(gemma, &ModelDir::new(dir.path()), &p).unwrap_err();
    assert!(
        matches!(err, CoreError::NotDownloadable { .. })
            && err.to_string().contains("scripts/fetch-models"),
        "{err}"
    );
}

/// What a download reported, in order.
#[derive(Debug, Default)]
struct Recorded {
    received: Vec<Progress>,
    /// Index into `received` at which `verifying` was called.
    verifying_at: Option<usize>,
}

impl ProgressSink for Recorded {
    fn received(&mut self, progress: Progress) {
        self.received.push(progress);
    }
    fn verifying(&mut self) {
        self.verifying_at = Some(self.received.len());
    }
}

#[test]
fn progress_counts_every_byte_up_to_the_announced_total() {
    let bytes = payload(400_000);
    let server = Server::start(one_file(&bytes, None));
    let dir = tempfile::tempdir().unwrap();
    let e = entry("model.gguf", Some(sha256_hex(&bytes)));
    let mut seen = Recorded::default();
    fetch_with_progress(&e, &ModelDir::new(dir.path()), &policy(&server), &mut seen).unwrap();
    let received = &seen.received;
    assert_eq!(received[0], Progress { done: 0, total: Some(400_000) }, "{received:?}");
    assert_eq!(received.last(), Some(&Progress { done: 400_000, total: Some(400_000) }));
    assert!(received.len() >= 3, "one report per chunk: {received:?}");
    assert!(received.windows(2).all(|w| w[0].done < w[1].done), "{received:?}");
    assert_eq!(seen.verifying_at, Some(received.len()), "verified after the last byte");
}

#[test]
fn progress_of_a_resumed_download_starts_at_the_bytes_already_there() {
    let bytes = payload(300_000);
    // the first response is cut after 100 000 bytes; the retry resumes with a Range request
    let server = Server::start(one_file(&bytes, Some(100_000)));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.gguf");
    std::fs::write(part_path(&dest), &bytes[..50_000]).unwrap();
    let url = format!("{}{URL_PATH}", server.base);
    let mut seen = Recorded::default();
    let d = download_file_with_progress(&url, &dest, None, &mut seen).unwrap();
    assert_eq!(d.requests, 2);
    let received = &seen.received;
    assert_eq!(received[0], Progress { done: 50_000, total: Some(300_000) }, "{received:?}");
    let retry = received.iter().position(|p| p.done == 150_000).expect("the cut at 150 000");
    assert_eq!(received[retry + 1], Progress { done: 150_000, total: Some(300_000) });
    assert_eq!(received.last(), Some(&Progress { done: 300_000, total: Some(300_000) }));
    assert!(received.windows(2).all(|w| w[0].done <= w[1].done), "{received:?}");
    assert_eq!(seen.verifying_at, None, "no checksum to verify");
}
