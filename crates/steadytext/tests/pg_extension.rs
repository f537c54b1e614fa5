//! Integration tier: the installed extension in a throwaway cluster.

mod support;

use std::time::Duration;

use support::cluster::TestCluster;
use support::daemon::{wait_until, Daemon};

#[test]
fn extension_installs_and_reports_its_version() {
    let cluster = TestCluster::start();
    let mut db = cluster.connect();
    db.batch_execute("CREATE EXTENSION pg_steadytext").unwrap();
    let row = db
        .query_one(
            "SELECT steadytext_version(), extversion FROM pg_extension WHERE extname = 'pg_steadytext'",
            &[],
        )
        .unwrap();
    let lib: String = row.get(0);
    let ext: String = row.get(1);
    assert_eq!(lib, steadytext_api::VERSION);
    assert_eq!(ext, steadytext_api::VERSION);
    // Dropping and recreating leaves nothing behind that blocks a reinstall.
    db.batch_execute("DROP EXTENSION pg_steadytext; CREATE EXTENSION pg_steadytext").unwrap();
}

/// The queue's rows as text, in id order: what a dump and restore must keep.
fn queue_rows(db: &mut postgres::Client) -> Vec<String> {
    db.query(
        "SELECT concat_ws(' | ', id, request_id, function_name, parameters, status, priority,
                          owner, result, error, created_at, completed_at, worker_id)
         FROM steadytext_queue ORDER BY id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn the_queue_survives_pg_dump_and_restore() {
    let cluster = TestCluster::start();
    let mut db = cluster.connect();
    // a completed request, one processing (its 1 s lease runs out), two pending; all alice's
    db.batch_execute(
        "CREATE EXTENSION pg_steadytext;
         CREATE ROLE dump_alice;
         CREATE ROLE st_worker LOGIN IN ROLE steadytext_worker;
         SET ROLE dump_alice;
         SELECT steadytext_generate_async('dumped request ' || i, 4) FROM generate_series(1, 4) i;
         RESET ROLE;
         SET ROLE st_worker;
         SELECT steadytext_queue_complete(request_id, 'before-dump', 'its result')
         FROM steadytext_queue_claim('before-dump', 1);
         SELECT count(*) FROM steadytext_queue_claim('before-dump', 1, '1 second');
         RESET ROLE;",
    )
    .unwrap();
    let before = queue_rows(&mut db);
    let status = |rows: &[String], s: &str| rows.iter().filter(|r| r.contains(s)).count();
    assert_eq!(
        (status(&before, "| completed |"), status(&before, "| processing |"), before.len()),
        (1, 1, 4),
        "{before:#?}"
    );

    cluster.dump_and_restore("postgres", "restored");

    let mut restored = cluster.connect_to("restored");
    assert_eq!(queue_rows(&mut restored), before, "the restored queue differs");
    // new requests follow the restored ones
    let id: String = restored
        .query_one("SELECT steadytext_generate_async('after the restore', 4)::text", &[])
        .unwrap()
        .get(0);
    let next: i64 = restored
        .query_one("SELECT id FROM steadytext_queue WHERE request_id = $1::text::uuid", &[&id])
        .unwrap()
        .get(0);
    let last: i64 = before.last().unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(next > last, "new id {next} after restored id {last}");

    // a worker on the restored database completes the pending ones and, once its lease has
    // run out, the one that was processing; the completed one keeps its result
    let url = cluster.url_of("st_worker", "restored");
    let _worker = Daemon::worker(&["--database-url", &url, "--worker-id", "after", "--lease", "3"]);
    let done = wait_until(Duration::from_secs(120), "the restored queue to drain", || {
        let rows: Vec<(String, Option<String>)> = restored
            .query("SELECT status, result FROM steadytext_queue ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        rows.iter().all(|(s, _)| s == "completed").then_some(rows)
    });
    assert_eq!(done.len(), 5);
    assert_eq!(done[0].1.as_deref(), Some("its result"));
    assert!(done.iter().all(|(_, r)| r.as_deref().is_some_and(|r| !r.is_empty())), "{done:?}");
}
