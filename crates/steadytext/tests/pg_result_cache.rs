//! Integration tier: the result cache every worker shares (steadytext_result_cache). A request
//! computed by one daemon's worker is a hit for another daemon with its own, empty local cache;
//! the synchronous API reads it too; and the workers evict beyond the configured bounds.

mod support;

use std::time::Duration;

use postgres::Client;
use steadytext_api::metric_names::{GENERATED_TOKENS, SHARED_CACHE_LOOKUPS};
use support::cluster::TestCluster;
use support::daemon::{wait_until, Daemon};

const DEADLINE: Duration = Duration::from_secs(300);

/// Creates the extension and the worker role `st_worker`.
fn setup(cluster: &TestCluster) -> Client {
    support::extension_with_worker_role(cluster)
}

/// `steadytext serve` with a queue worker on the cluster (its own local cache file).
fn serve_worker(cluster: &TestCluster, id: &str) -> Daemon {
    let url = cluster.url("st_worker");
    Daemon::serve(&["--database-url", &url, "--worker-id", id, "--lease", "30"])
}

/// Enqueues a generation and returns its result once completed.
fn generate_async(db: &mut Client, prompt: &str) -> String {
    let id: String =
        db.query_one("SELECT steadytext_generate_async($1, 12)::text", &[&prompt]).unwrap().get(0);
    wait_until(DEADLINE, "the request to complete", || {
        let row = db
            .query_one(
                "SELECT status, result FROM steadytext_queue WHERE request_id = $1::text::uuid",
                &[&id],
            )
            .unwrap();
        let status: String = row.get(0);
        assert!(status != "failed" && status != "cancelled", "request {id}: {status}");
        row.get::<_, Option<String>>(1)
    })
}

fn shared_entries(db: &mut Client) -> i64 {
    db.query_one("SELECT count(*) FROM steadytext_result_cache", &[]).unwrap().get(0)
}

#[test]
fn a_result_computed_by_one_worker_is_a_hit_for_another() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    let mut a = serve_worker(&cluster, "worker-a");
    let first = generate_async(&mut db, "A shared cache stores");
    assert!(a.counter(GENERATED_TOKENS).unwrap() > 0.0);
    assert_eq!(shared_entries(&mut db), 1, "worker A stored its result");
    a.terminate(DEADLINE);

    // B starts with an empty local cache: the same request is answered from PostgreSQL
    let b = serve_worker(&cluster, "worker-b");
    let again = generate_async(&mut db, "A shared cache stores");
    assert_eq!(again, first);
    assert_eq!(b.counter(GENERATED_TOKENS).unwrap(), 0.0);
    let hits = |d: &Daemon| {
        d.get("/metrics")
            .unwrap()
            .lines()
            .filter(|l| l.starts_with(&format!("{SHARED_CACHE_LOOKUPS}{{")))
            .filter(|l| l.contains("outcome=\"hit\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(hits(&b), 1.0);

    // the synchronous API of B reads it too (a fresh local cache would miss)
    let (status, body) = b.request(
        "POST",
        "/steadytext/v1/generate",
        &["Content-Type: application/json"],
        r#"{"prompt": "A shared cache stores", "max_tokens": 12}"#,
    );
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["text"], first.as_str());
    assert_eq!(reply["cached"], true);

    // a new request is computed by B and stored for everyone
    generate_async(&mut db, "Something only B computes");
    assert!(b.counter(GENERATED_TOKENS).unwrap() > 0.0);
    assert_eq!(shared_entries(&mut db), 2);
}

#[test]
fn workers_evict_beyond_the_configured_bounds() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    let keys: Vec<String> = (0..50).map(|i| format!("{i:064x}")).collect();
    let results: Vec<String> = (0..50).map(|i| format!("result {i}")).collect();
    db.query_one("SELECT steadytext_result_cache_put($1, $2)", &[&keys, &results]).unwrap();
    db.batch_execute("ALTER ROLE st_worker SET steadytext.result_cache_max_entries = 10").unwrap();
    // a daemon evicts when it starts (then every minute)
    let _a = serve_worker(&cluster, "worker-a");
    wait_until(DEADLINE, "the cache to shrink to 10 entries", || {
        (shared_entries(&mut db) == 10).then_some(())
    });
}

/// Rows of the cache table read so far, by sequential and index scans (statistics lag by
/// seconds).
fn cache_rows_read(db: &mut Client) -> i64 {
    db.query_one(
        "SELECT (seq_tup_read + coalesce(idx_tup_fetch, 0))::bigint FROM pg_stat_user_tables \
         WHERE relname = 'steadytext_result_cache'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// Calls of the extension's function `name` counted by the cluster (`track_functions`).
fn calls(db: &mut Client, name: &str) -> i64 {
    db.query_one(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_user_functions WHERE funcname = $1",
        &[&name],
    )
    .unwrap()
    .get(0)
}

/// Eight daemons share one cache: each asks every minute whether an eviction is due, and one
/// eviction runs per minute among them (before, each daemon ran its own, each scanning the
/// cache's index). The cluster counts the calls of the two functions; 40 entries over the bound
/// take one call of steadytext_result_cache_evict per run.
#[test]
fn eight_daemons_run_one_eviction_per_minute_between_them() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    // (two statements: ALTER SYSTEM cannot run in the implicit transaction of a batch)
    db.batch_execute("ALTER SYSTEM SET track_functions = 'all'").unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("{i:064x}")).collect();
    let results: Vec<String> = (0..50).map(|i| format!("result {i}")).collect();
    db.query_one("SELECT steadytext_result_cache_put($1, $2)", &[&keys, &results]).unwrap();
    db.batch_execute("ALTER ROLE st_worker SET steadytext.result_cache_max_entries = 10").unwrap();
    let reads_before = cache_rows_read(&mut db);
    let started = std::time::Instant::now();
    // started together, as a fleet restarting would: their first questions meet on the one row
    let cluster = &cluster;
    let daemons: Vec<Daemon> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..8)
            .map(|i| scope.spawn(move || serve_worker(cluster, &format!("worker-{i}"))))
            .collect();
        starting.into_iter().map(|s| s.join().expect("a daemon started")).collect()
    });
    // every daemon asked once (statistics reach the view within seconds of each session idling)
    wait_until(DEADLINE, "8 daemons to ask whether an eviction is due", || {
        (calls(&mut db, "steadytext_result_cache_evict_due") >= 8).then_some(())
    });
    wait_until(DEADLINE, "the cache to shrink to 10 entries", || {
        (shared_entries(&mut db) == 10).then_some(())
    });
    let asked = calls(&mut db, "steadytext_result_cache_evict_due");
    let runs = calls(&mut db, "steadytext_result_cache_evict");
    let minutes = started.elapsed().as_secs() / 60;
    eprintln!(
        "8 daemons, {:.0} s: {asked} asked whether an eviction was due, {runs} eviction ran, \
         {} rows of the cache read",
        started.elapsed().as_secs_f64(),
        cache_rows_read(&mut db) - reads_before
    );
    assert!(runs >= 1 && runs as u64 <= 1 + minutes, "{runs} evictions in {minutes} minute(s)");
    drop(daemons);
}
