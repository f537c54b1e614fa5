//! Integration tier: the installed extension in a throwaway cluster.

mod support;

use support::cluster::TestCluster;

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
    db.batch_execute(
        "CREATE EXTENSION pg_steadytext;
         CREATE ROLE dump_alice;
         CREATE ROLE dump_worker IN ROLE steadytext_worker;
         SET ROLE dump_alice;
         SELECT steadytext_generate_async('dumped request ' || i, 4) FROM generate_series(1, 3) i;
         RESET ROLE;
         SET ROLE dump_worker;
         SELECT steadytext_queue_complete(request_id, 'dump-worker', 'its result')
         FROM steadytext_queue_claim('dump-worker', 1);
         RESET ROLE;",
    )
    .unwrap();
    let before = queue_rows(&mut db);
    assert_eq!(before.len(), 3);
    assert!(
        before[0].contains("| completed |") && before[0].contains("| its result |"),
        "{before:?}"
    );

    let dump = cluster.client_program("pg_dump").args(["-d", "postgres"]).output().unwrap();
    assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
    db.batch_execute("CREATE DATABASE restored").unwrap();
    let mut psql = cluster
        .client_program("psql")
        .args(["-d", "restored", "-q", "-v", "ON_ERROR_STOP=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        psql.stdin.take().unwrap().write_all(&dump.stdout).unwrap();
    }
    let restore = psql.wait_with_output().unwrap();
    assert!(restore.status.success(), "restore: {}", String::from_utf8_lossy(&restore.stderr));

    let mut restored = cluster.connect_to("restored");
    assert_eq!(queue_rows(&mut restored), before, "the restored queue differs");
    // new requests follow the restored ones, and the pending ones can still be claimed
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
    restored.batch_execute("SET ROLE dump_worker").unwrap();
    let claimed = restored.query("SELECT 1 FROM steadytext_queue_claim('w', 10)", &[]).unwrap();
    assert_eq!(claimed.len(), 3, "two restored pending requests and the new one");
}
