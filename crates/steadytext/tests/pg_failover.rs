//! Integration tier: a worker given a multi-host connection string follows a promoted standby.
//! A primary and its streaming standby (`pg_basebackup -R`) on this machine; the worker connects
//! with `host=primary,standby target_session_attrs=read-write`; while it drains, the standby is
//! stopped as a crash would, and then the standby is promoted. Every request that reached the
//! standby completes, exactly once, on the new primary, without restarting the worker.
//!
//! The synchronous functions during the gap (no primary yet): a connection that asks for a
//! read-write server is refused (08001 on the client's side), while a session on the standby
//! still gets answers from `steadytext serve` (it computes without its shared result cache,
//! which it cannot reach); after the promotion the same call through the read-write connection
//! string computes the same bytes again (`use_cache => false`).

mod support;

use std::time::Duration;

use support::cluster::TestCluster;
use support::daemon::{wait_until, Daemon};

#[test]
fn the_worker_follows_a_promoted_standby_and_every_replicated_request_completes_once() {
    let primary = TestCluster::start();
    let mut db = support::extension_with_worker_role(&primary);
    let standby = TestCluster::start_standby_of(&primary);
    let url = format!(
        "postgresql://st_worker@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let serve = Daemon::serve(&["--database-url", &url, "--concurrency", "1"]);
    let _worker = Daemon::worker(&[
        "--database-url",
        &url,
        "--worker-id",
        "follows",
        "--lease",
        "3",
        "--concurrency",
        "8",
    ]);
    let jobs = 48;
    db.execute(
        "SELECT count(steadytext_generate_async('Failover request ' || i, 3, use_cache => false))
         FROM generate_series(1, $1) AS i",
        &[&jobs],
    )
    .unwrap();
    let mut replica = standby.connect();
    let ids: Vec<String> = wait_until(Duration::from_secs(30), "the enqueue to replicate", || {
        let rows = replica
            .query("SELECT request_id::text FROM steadytext_queue ORDER BY request_id", &[])
            .unwrap();
        (rows.len() == jobs as usize).then(|| rows.iter().map(|r| r.get(0)).collect())
    });
    // the drain is under way on the primary
    wait_until(Duration::from_secs(120), "some requests to complete", || {
        (support::queue_statuses(&mut db).get("completed").copied().unwrap_or(0) >= 8).then_some(())
    });
    drop(db);
    primary.stop_immediately();

    // the gap: no server accepts a read-write session, the standby still answers queries
    let client_url = url.replace("st_worker@", "postgres@");
    let refused = postgres::Client::connect(&client_url, postgres::NoTls)
        .err()
        .expect("a read-write session with the primary down and the standby not yet promoted");
    assert!(
        refused.as_db_error().is_none(),
        "refused by the client (connection failure, 08001), not by a server: {refused}"
    );
    let sync = format!(
        "SET steadytext.daemon_url = '{}'; SELECT steadytext_generate('Failover gap prompt', 4, use_cache => false)",
        serve.url
    );
    let in_gap = sync_result(&mut replica, &sync);
    assert!(!in_gap.is_empty(), "a synchronous call on the standby during the gap");

    standby.promote();

    // on the new primary, the same worker process finishes everything
    let mut db = standby.connect();
    let mut through_url = wait_until(Duration::from_secs(60), "a read-write session", || {
        postgres::Client::connect(&client_url, postgres::NoTls).ok()
    });
    let after_gap = sync_result(&mut through_url, &sync);
    assert_eq!(after_gap, in_gap, "the same call after the promotion");
    let done =
        wait_until(Duration::from_secs(240), "the drain to finish on the new primary", || {
            let s = support::queue_statuses(&mut db);
            (!s.contains_key("pending") && !s.contains_key("processing")).then_some(s)
        });
    assert_eq!(done.get("completed").copied(), Some(i64::from(jobs)), "{done:?}");
    let after: Vec<String> = db
        .query("SELECT request_id::text FROM steadytext_queue ORDER BY request_id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(after, ids, "the requests on the new primary are the replicated ones");
    let empty: i64 = db
        .query_one("SELECT count(*) FROM steadytext_queue WHERE result IS NULL OR result = ''", &[])
        .unwrap()
        .get(0);
    assert_eq!(empty, 0, "completed without a result");
}

/// The text the last statement of `sql` returned (a simple-query batch).
fn sync_result(db: &mut postgres::Client, sql: &str) -> String {
    db.simple_query(sql)
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}
