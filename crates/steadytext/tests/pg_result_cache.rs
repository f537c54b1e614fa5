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
