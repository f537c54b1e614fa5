//! `steadytext serve` and `steadytext worker`: start the engine, the cache, the HTTP API and/or
//! the queue worker, and stop them cleanly on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::cache::ResultCache;
use crate::cli::{CacheArgs, EngineArgs, ServeArgs, WorkerArgs};
use crate::db_config;
use crate::engine_host::{EngineConfig, EngineHandle};
use crate::error::DaemonError;
use crate::metrics::Metrics;
use crate::server::{router, AppState};
use crate::service::Service;
use crate::worker::{host_name, Worker};

/// Runs `steadytext serve` until SIGTERM/SIGINT.
pub fn serve(args: ServeArgs) -> Result<(), DaemonError> {
    runtime()?.block_on(async move {
        let service = start_service(&args.engine, &args.cache, args.max_batch)?;
        let shutdown = shutdown_signal()?;
        if !is_loopback(&args.host) && args.token.is_none() {
            eprintln!(
                "steadytext: warning: listening on {} without --token; anyone who can reach it \
                 may use the API",
                args.host
            );
        }
        let state = AppState { service: service.clone(), token: args.token.clone() };
        let app = router(state);
        let addr = format!("{}:{}", args.host, args.port);
        let tcp = TcpListener::bind(&addr)
            .await
            .map_err(|source| DaemonError::Bind { addr: addr.clone(), source })?;
        let local: SocketAddr = tcp.local_addr()?;
        // one parseable line, so scripts and tests can find a port chosen with --port 0
        println!("steadytext serve: listening on http://{local}");
        let mut tasks = tokio::task::JoinSet::new();
        let mut stop = shutdown.clone();
        let tcp_app = app.clone();
        tasks.spawn(async move {
            axum::serve(tcp, tcp_app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .map_err(DaemonError::Io)
        });
        if let Some(path) = &args.socket {
            let _ = std::fs::remove_file(path);
            let unix = UnixListener::bind(path)
                .map_err(|source| DaemonError::Bind { addr: path.display().to_string(), source })?;
            println!("steadytext serve: listening on unix:{}", path.display());
            let mut stop = shutdown.clone();
            tasks.spawn(async move {
                axum::serve(unix, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
                    .map_err(DaemonError::Io)
            });
        }
        if db_config::configured(&args.db) {
            let worker = Worker {
                db: db_config::config(&args.db)?,
                tuning: args.worker,
                service,
                worker_id: String::new(),
                shutdown: shutdown.clone(),
            };
            tasks.spawn(async move { with_id(worker).run().await });
        }
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
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
        let service = start_service(&args.engine, &args.cache, args.max_batch)?;
        let worker = Worker {
            db: db_config::config(&args.db)?,
            tuning: args.worker,
            service,
            worker_id: String::new(),
            shutdown: shutdown_signal()?,
        };
        with_id(worker).run().await
    })
}

fn with_id(mut worker: Worker) -> Worker {
    worker.worker_id = worker
        .tuning
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    worker
}

fn runtime() -> Result<tokio::runtime::Runtime, DaemonError> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Loads the engine and opens the cache.
fn start_service(
    engine: &EngineArgs,
    cache: &CacheArgs,
    max_batch: u16,
) -> Result<Service, DaemonError> {
    let metrics = Metrics::default();
    let config = EngineConfig {
        model_dir: engine.model_dir(),
        threads: engine.thread_count(),
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
    Ok(Service { engine: handle, cache: Arc::new(cache), metrics })
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
        eprintln!("steadytext: shutting down (finishing the current batch)");
        let _ = tx.send(true);
    });
    Ok(rx)
}
