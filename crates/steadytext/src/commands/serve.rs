//! `steadytext serve` and `steadytext worker`: start the engine, the cache, the HTTP API and/or
//! the queue worker, and stop them cleanly on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::cache::ResultCache;
use crate::cli::{DaemonArgs, ServeArgs, WorkerArgs};
use crate::engine_host::{EngineConfig, EngineHandle};
use crate::error::DaemonError;
use crate::http::{router, AppState};
use crate::metrics::Metrics;
use crate::readiness::{Ready, ReadyFile};
use crate::service::Service;
use crate::shared_cache::SharedCache;
use crate::worker::db_config;
use crate::worker::{host_name, Worker};

/// The bearer token of `--token`, or the first line of `--token-file` (an unreadable or empty
/// file is an error: a daemon meant to be protected never starts open).
fn token(args: &ServeArgs) -> Result<Option<String>, DaemonError> {
    let Some(path) = &args.token_file else { return Ok(args.token.clone()) };
    let text = std::fs::read_to_string(path).map_err(|source| DaemonError::TokenFile {
        path: path.clone(),
        reason: source.to_string(),
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        let reason = "it is empty".to_owned();
        return Err(DaemonError::TokenFile { path: path.clone(), reason });
    }
    Ok(Some(token.to_owned()))
}

/// Runs `steadytext serve` until SIGTERM/SIGINT.
pub fn serve(args: ServeArgs) -> Result<(), DaemonError> {
    runtime()?.block_on(async move {
        let service = start_service(&args.daemon)?;
        let shutdown = shutdown_signal()?;
        let token = token(&args)?;
        if !is_loopback(&args.host) && token.is_none() {
            eprintln!(
                "steadytext: warning: listening on {} without --token; anyone who can reach it \
                 may use the API",
                args.host
            );
        }
        let ui_db = if db_config::configured(&args.daemon.db) {
            Some(db_config::config(&args.daemon.db)?)
        } else {
            None
        };
        let ui = crate::ui::Ui::new(ui_db, token.clone(), args.ui_actions);
        let app = router(AppState { service: service.clone(), token, ui });
        let addr = format!("{}:{}", args.host, args.port);
        let tcp = TcpListener::bind(&addr)
            .await
            .map_err(|source| DaemonError::Bind { addr: addr.clone(), source })?;
        let local: SocketAddr = tcp.local_addr()?;
        let unix = match &args.socket {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                Some(UnixListener::bind(path).map_err(|source| DaemonError::Bind {
                    addr: path.display().to_string(),
                    source,
                })?)
            }
            None => None,
        };
        println!("steadytext serve: listening on http://{local}");
        let mut tasks = JoinSet::new();
        spawn_server(&mut tasks, tcp, app.clone(), shutdown.clone());
        if let (Some(unix), Some(path)) = (unix, &args.socket) {
            println!("steadytext serve: listening on unix:{}", path.display());
            spawn_server(&mut tasks, unix, app, shutdown.clone());
        }
        let daemon = args.daemon;
        let signal = ReadyFile::new(daemon.ready_file.clone())?;
        let mut ready = Ready {
            url: Some(format!("http://{local}")),
            socket: args.socket.as_ref().map(|p| format!("unix:{}", p.display())),
            worker: None,
            pid: std::process::id(),
        };
        let mut listening = None;
        if db_config::configured(&daemon.db) {
            let (worker, rx) = new_worker(&daemon, service, shutdown)?;
            ready.worker = Some(worker.worker_id.clone());
            listening = Some(rx);
            tasks.spawn(worker.run());
        }
        let announce = signal.announce(ready, listening);
        tokio::pin!(announce);
        let mut first_error = None;
        let mut announced = false;
        loop {
            let done = tokio::select! {
                result = &mut announce, if !announced => {
                    announced = true;
                    if let Err(e) = result {
                        first_error.get_or_insert(e);
                    }
                    continue;
                }
                done = tasks.join_next() => done,
            };
            let Some(done) = done else { break };
            if let Ok(Err(e)) = done {
                first_error.get_or_insert(e);
            }
        }
        if let Some(path) = &args.socket {
            let _ = std::fs::remove_file(path);
        }
        first_error.map_or(Ok(()), Err)
    })
}

/// Runs `steadytext worker` until SIGTERM/SIGINT.
pub fn worker(args: WorkerArgs) -> Result<(), DaemonError> {
    runtime()?.block_on(async move {
        let daemon = args.daemon;
        let signal = ReadyFile::new(daemon.ready_file.clone())?;
        let service = start_service(&daemon)?;
        let (worker, listening) = new_worker(&daemon, service, shutdown_signal()?)?;
        let ready = Ready {
            url: None,
            socket: None,
            worker: Some(worker.worker_id.clone()),
            pid: std::process::id(),
        };
        let run = tokio::spawn(worker.run());
        signal.announce(ready, Some(listening)).await?;
        run.await.map_err(|e| DaemonError::Io(std::io::Error::other(e)))?
    })
}

/// Serves `app` on `listener` until `shutdown` turns true.
fn spawn_server<L>(
    tasks: &mut JoinSet<Result<(), DaemonError>>,
    listener: L,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tasks.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await
            .map_err(DaemonError::Io)
    });
}

/// A queue worker on `service`, with its id from `--worker-id` or `<hostname>-<pid>`, and the
/// signal it gives once it listens for requests.
fn new_worker(
    daemon: &DaemonArgs,
    service: Service,
    shutdown: watch::Receiver<bool>,
) -> Result<(Worker, oneshot::Receiver<()>), DaemonError> {
    let tuning = daemon.worker.clone();
    let worker_id = tuning
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    let (ready, listening) = oneshot::channel();
    let db = db_config::config(&daemon.db)?;
    let max_batch = u32::from(daemon.max_batch);
    let worker = Worker { db, tuning, service, worker_id, shutdown, ready: Some(ready), max_batch };
    Ok((worker, listening))
}

fn runtime() -> Result<tokio::runtime::Runtime, DaemonError> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Loads the engine and opens the cache.
fn start_service(daemon: &DaemonArgs) -> Result<Service, DaemonError> {
    let (engine, cache, max_batch) = (&daemon.engine, &daemon.cache, daemon.max_batch);
    let metrics = Metrics::default();
    let config = EngineConfig {
        model_dir: engine.model_dir()?,
        threads: engine.thread_policy(),
        max_batch: usize::from(max_batch),
    };
    let handle = EngineHandle::start(config, metrics.clone())?;
    for (role, model) in [("generation", &handle.generation), ("embedding", &handle.embedding)] {
        match model {
            Ok(m) => eprintln!("steadytext: {role} model {} ({})", m.name, m.file),
            Err(reason) => eprintln!("steadytext: warning: no {role} model: {reason}"),
        }
    }
    let capacity = NonZeroUsize::new(cache.cache_capacity as usize).unwrap_or(NonZeroUsize::MIN);
    let path =
        (!cache.no_disk_cache).then(|| cache.cache_file.clone().unwrap_or_else(default_cache_file));
    let cache = match ResultCache::open(capacity, path.as_deref()) {
        Ok(c) => c,
        // e.g. another steadytext process holds the file: keep serving from memory
        Err(e) => {
            eprintln!("steadytext: warning: {e}; the cache is memory-only");
            ResultCache::open(capacity, None)?
        }
    };
    // the shared tier needs the database the worker uses (and a runtime: callers are in one)
    let shared = if db_config::configured(&daemon.db) {
        Some(SharedCache::start(db_config::config(&daemon.db)?))
    } else {
        None
    };
    Ok(Service { engine: handle, cache: Arc::new(cache), shared, metrics })
}

fn default_cache_file() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache/steadytext/cache.redb")
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A flag that turns true on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<watch::Receiver<bool>, DaemonError> {
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("steadytext: shutting down (finishing the running requests)");
        let _ = tx.send(true);
    });
    Ok(rx)
}
