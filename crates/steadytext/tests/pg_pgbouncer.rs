//! Integration tier: clients and workers through PgBouncer (Debian's package) in front of the
//! cluster. Clients' SQL works in transaction pooling, where consecutive transactions of one
//! client may run on different server connections and one server connection serves several
//! clients; the worker needs LISTEN and its prepared statements for a whole session, so it runs
//! through session pooling (or a direct connection).

mod support;

use steadytext_testkit::pgbouncer::PgBouncer;
use support::cluster::TestCluster;
use support::daemon::Daemon;

/// The first column of the first row of a simple-protocol query (as PgBouncer's transaction
/// pooling needs without prepared-statement support), as text.
fn one(db: &mut postgres::Client, sql: &str) -> String {
    let rows = db.simple_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

#[test]
fn client_sql_works_through_transaction_pooling_and_the_worker_through_session_pooling() {
    let cluster = TestCluster::start();
    let mut db = cluster.connect();
    db.batch_execute(
        "CREATE EXTENSION pg_steadytext;
         CREATE ROLE st_worker LOGIN IN ROLE steadytext_worker;
         CREATE ROLE bouncer_client LOGIN;",
    )
    .unwrap();
    // 2 server connections per pool for 4 clients: they take turns on shared connections
    let bouncer = PgBouncer::start(&cluster, 2);
    let serve = Daemon::serve(&[
        "--database-url",
        &bouncer.url("st_worker", "postgres_session"),
        "--worker-id",
        "through-pgbouncer",
        "--concurrency",
        "4",
    ]);
    db.batch_execute(&format!("ALTER SYSTEM SET steadytext.daemon_url = '{}'", serve.url)).unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();

    let mut clients: Vec<postgres::Client> =
        (0..4).map(|_| bouncer.connect("bouncer_client", "postgres").unwrap()).collect();
    // each client enqueues, then (in later transactions, on whichever server connection)
    // checks, waits for and reads its request
    let ids: Vec<String> = clients
        .iter_mut()
        .enumerate()
        .map(|(i, c)| {
            one(c, &format!("SELECT steadytext_generate_async('Through PgBouncer {i}:', 4)"))
        })
        .collect();
    for (c, id) in clients.iter_mut().zip(&ids) {
        let status = one(c, &format!("SELECT status FROM steadytext_check_async('{id}')"));
        assert!(["pending", "processing", "completed"].contains(&status.as_str()), "{status}");
    }
    for (i, (c, id)) in clients.iter_mut().zip(&ids).enumerate() {
        let waited = one(c, &format!("SELECT steadytext_get_async_result('{id}', 60)"));
        let sync = one(c, &format!("SELECT steadytext_generate('Through PgBouncer {i}:', 4)"));
        assert!(!waited.is_empty());
        assert_eq!(waited, sync, "the queued and the synchronous result of request {i}");
    }
    // the 4 clients shared the pool's 2 server connections
    let mut pids = std::collections::HashSet::new();
    for c in clients.iter_mut() {
        for _ in 0..3 {
            pids.insert(one(c, "SELECT pg_backend_pid()"));
        }
    }
    assert!(pids.len() <= 2, "{} server connections for a pool of 2", pids.len());
    // cancel, and a synchronous embedding
    let c = &mut clients[0];
    let id = one(c, "SELECT steadytext_generate_async('to be cancelled', 400, priority => -10)");
    let cancelled = one(c, &format!("SELECT steadytext_cancel_async('{id}')"));
    let status = one(c, &format!("SELECT status FROM steadytext_check_async('{id}')"));
    assert!(
        (cancelled == "t" && status == "cancelled") || (cancelled == "f" && status == "completed"),
        "cancel answered {cancelled}, status {status}"
    );
    let dims = one(c, "SELECT array_length(steadytext_embed('through PgBouncer')::real[], 1)");
    assert_eq!(dims, "384");
    // every request was served by the worker that connected through the session pool
    let workers = one(
        &mut db,
        "SELECT string_agg(DISTINCT worker_id, ',') FROM steadytext_queue WHERE status = 'completed'",
    );
    assert_eq!(workers, "through-pgbouncer");
    drop(serve);
}
