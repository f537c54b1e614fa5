//! Integration tier: installing a new build while a cluster runs with the library in
//! `shared_preload_libraries` keeps the cluster up. `scripts/install-extension` renames each new
//! file over the old one; copying over the loaded library in place (what `cargo pgrx install`
//! does) crashed such a cluster (issue #24: SIGILL in the autovacuum launcher, then the
//! postmaster).

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use support::cluster::TestCluster;

/// The first column of the first row of `sql`, as text.
fn text(db: &mut postgres::Client, sql: &str) -> String {
    db.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

#[test]
fn installing_twice_under_a_preloaded_cluster_keeps_it_up() {
    let cluster = Arc::new(TestCluster::start_with(&["shared_preload_libraries=pg_steadytext"]));
    let mut db = cluster.connect();
    db.batch_execute("CREATE EXTENSION pg_steadytext").unwrap();
    let started = text(&mut db, "SELECT pg_postmaster_start_time()::text");

    // sessions that use the library, a new one every round, until the installs are done
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (cluster, stop, rounds, errors) =
            (Arc::clone(&cluster), Arc::clone(&stop), Arc::clone(&rounds), Arc::clone(&errors));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let round = cluster.connect().batch_execute(
                    "SELECT steadytext_version();
                     SELECT steadytext_generate_async('while installing', 4);
                     SELECT count(*) FROM steadytext_queue;",
                );
                match round {
                    Ok(()) => rounds.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.lock().unwrap().push(e.to_string());
                        0
                    }
                };
            }
        })
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/install-extension");
    for i in 0..2 {
        let before = rounds.load(Ordering::Relaxed);
        let out = Command::new(script).output().unwrap();
        assert!(
            out.status.success(),
            "install {i}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(rounds.load(Ordering::Relaxed) > before, "no session ran during install {i}");
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "sessions failed while installing: {errors:?}");

    let mut db = cluster.connect();
    assert_eq!(text(&mut db, "SELECT pg_postmaster_start_time()::text"), started, "restarted");
    let launcher = text(
        &mut db,
        "SELECT count(*)::text FROM pg_stat_activity WHERE backend_type = 'autovacuum launcher'",
    );
    assert_eq!(launcher, "1", "the autovacuum launcher is gone");
    let queued = text(&mut db, "SELECT count(*)::text FROM steadytext_queue");
    assert!(queued.parse::<usize>().unwrap() >= 2, "{queued} requests enqueued meanwhile");
}
