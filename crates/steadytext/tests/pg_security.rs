//! Security tier (with `extension/tests/security`): the attacks of docs/security.md that need a
//! running worker — code planted where the worker's superuser session would find it, and a
//! forged cancel notification.

mod support;

use std::time::Duration;

use postgres::Client;
use steadytext_api::notifications::{Completion, Outcome, COMPLETED_CHANNEL};
use support::cluster::TestCluster;
use support::daemon::{wait_until, Daemon};

fn status_of(db: &mut Client, id: &str) -> String {
    db.query_one(
        "SELECT status FROM public.steadytext_queue WHERE request_id = $1::text::uuid",
        &[&id],
    )
    .unwrap()
    .get(0)
}

/// A session of `role` (a login role of the cluster).
fn connect_as(cluster: &TestCluster, role: &str) -> Client {
    Client::connect(&cluster.url(role), postgres::NoTls).unwrap()
}

/// The review's worst finding, against the worker's own session: a schema named like the
/// worker's role comes first on the default search_path (`"$user", public`), so an ordinary role
/// owning it plants functions with the signatures of the queue's transitions and a table named
/// like the queue, and pg_catalog look-alikes in `public` (CREATE granted, as on PostgreSQL 14 and
/// older). The worker, connected as the superuser `postgres`, claims, completes, fails, rescues,
/// heartbeats, purges and uses the shared result cache without running any of them.
#[test]
fn a_superuser_worker_runs_no_code_planted_on_its_search_path() {
    let cluster = TestCluster::start();
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION pg_steadytext;
             CREATE ROLE mallory LOGIN;
             CREATE ROLE alice LOGIN;
             GRANT CREATE ON SCHEMA public TO PUBLIC;
             CREATE SCHEMA postgres AUTHORIZATION mallory;
             CREATE TABLE public.fired (trap text, by_role name);
             GRANT INSERT, SELECT ON public.fired TO PUBLIC;",
        )
        .unwrap();
    let mut mallory = connect_as(&cluster, "mallory");
    let trap = |schema: &str, signature: &str, returns: &str, ret: &str| {
        let name = signature.split('(').next().unwrap();
        format!(
            "CREATE FUNCTION {schema}.{signature} RETURNS {returns} LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO public.fired VALUES ('{schema}.{name}', current_user); RETURN{ret};
             END $$;"
        )
    };
    let planted = [
        trap("postgres", "steadytext_queue_rescue_expired(backoff interval DEFAULT '1 second', retry_limit integer DEFAULT NULL)", "integer", " 0"),
        trap("postgres", "steadytext_worker_heartbeat(worker_id text, host text, pid integer, lease interval DEFAULT '300 seconds', status text DEFAULT 'running')", "integer", " 0"),
        trap("postgres", "steadytext_queue_claim(worker_id text, batch_size integer DEFAULT 1, lease interval DEFAULT '300 seconds')", "SETOF public.steadytext_queue", ""),
        trap("postgres", "steadytext_queue_claim(worker_id text, batch_size integer, lease interval, other_cost integer)", "SETOF public.steadytext_queue", ""),
        trap("postgres", "steadytext_queue_complete_many(worker_id text, request_ids uuid[], results text[])", "boolean[]", " NULL"),
        trap("postgres", "steadytext_queue_fail(request_id uuid, worker_id text, error text, retryable boolean DEFAULT true, backoff interval DEFAULT '1 second', retry_limit integer DEFAULT NULL)", "text", " NULL"),
        trap("postgres", "steadytext_queue_purge(retention interval, batch_limit integer DEFAULT 500)", "integer", " 0"),
        trap("postgres", "steadytext_result_cache_get(keys text[])", "TABLE (cache_key text, result text)", ""),
        trap("postgres", "steadytext_result_cache_put(keys text[], results text[])", "integer", " 0"),
        trap("public", "cardinality(anyarray)", "integer", " NULL"),
        trap("public", "array_position(anyarray, anyelement)", "integer", " NULL"),
        trap("public", "power(double precision, double precision)", "double precision", " NULL"),
        trap("public", "quote_ident(text)", "text", " NULL"),
        trap("public", "current_setting(text, boolean)", "text", " NULL"),
        "CREATE TABLE postgres.steadytext_queue (LIKE public.steadytext_queue);".to_owned(),
    ]
    .concat();
    mallory.batch_execute(&planted).unwrap();
    // the traps are live: the superuser's own unqualified call under the default search_path
    // runs one (then the log is emptied)
    admin.query_one("SELECT steadytext_queue_rescue_expired()", &[]).unwrap();
    let fired: Vec<String> =
        admin.query("SELECT trap FROM fired", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(
        fired,
        ["postgres.steadytext_queue_rescue_expired"],
        "the control call ran the trap"
    );
    admin.batch_execute("TRUNCATE fired").unwrap();

    let mut alice = connect_as(&cluster, "alice");
    let ids: Vec<String> = (0..4)
        .map(|i| {
            alice
                .query_one(
                    "SELECT steadytext_generate_async($1, 4, use_cache => false)::text",
                    &[&format!("Trap {i} is")],
                )
                .unwrap()
                .get(0)
        })
        .collect();
    alice.execute("SELECT steadytext_cancel_async($1::text::uuid)", &[&ids[3]]).unwrap();
    let url = cluster.url("postgres");
    let _worker = Daemon::worker(&[
        "--database-url",
        &url,
        "--worker-id",
        "superuser-worker",
        "--lease",
        "3",
    ]);
    for id in &ids[..3] {
        wait_until(Duration::from_secs(120), "the requests to complete", || {
            (status_of(&mut admin, id) == "completed").then_some(())
        });
    }
    let result: String = alice
        .query_one("SELECT steadytext_get_async_result($1::text::uuid, 10)", &[&ids[0]])
        .unwrap()
        .get(0);
    assert!(!result.is_empty());
    let fired: Vec<(String, String)> = admin
        .query("SELECT trap, by_role::text FROM fired", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(fired.is_empty(), "planted code ran: {fired:?}");
}

/// Any role may `NOTIFY steadytext_completed`; a forged "cancelled" notice for a running request
/// (whose id LISTEN shows every role) must not stop it: the worker reads the row first, says
/// that it ignored the notice, and the request completes normally.
#[test]
fn a_forged_cancel_notification_does_not_stop_a_request() {
    let cluster = TestCluster::start();
    let mut admin = support::extension_with_worker_role(&cluster);
    admin.batch_execute("CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;").unwrap();
    let mut alice = connect_as(&cluster, "alice");
    let id: String = alice
        .query_one(
            "SELECT steadytext_generate_async('Once upon a time', 400, use_cache => false)::text",
            &[],
        )
        .unwrap()
        .get(0);
    let url = cluster.url("st_worker");
    let mut worker =
        Daemon::worker(&["--database-url", &url, "--worker-id", "forgery-target", "--lease", "3"]);
    wait_until(Duration::from_secs(60), "the request to be processing", || {
        (status_of(&mut admin, &id) == "processing").then_some(())
    });
    let mut bob = connect_as(&cluster, "bob");
    let forged = Completion {
        request_id: id.clone(),
        function: "generate".to_owned(),
        status: Outcome::Cancelled,
    };
    let forged = serde_json::to_string(&forged).unwrap();
    bob.execute("SELECT pg_notify($1, $2)", &[&COMPLETED_CHANNEL, &forged]).unwrap();
    let log = worker
        .wait_for_log(&format!("ignored a cancel notification for {id}"), Duration::from_secs(60));
    assert!(log.contains("still processing here"), "{log}");
    wait_until(Duration::from_secs(300), "the request to finish", || {
        let status = status_of(&mut admin, &id);
        (status != "processing").then_some(())
    });
    assert_eq!(status_of(&mut admin, &id), "completed");
    let result: String = alice
        .query_one("SELECT steadytext_get_async_result($1::text::uuid, 10)", &[&id])
        .unwrap()
        .get(0);
    assert!(!result.is_empty());

    // a real cancel still stops the engine work at once
    let id: String = alice
        .query_one(
            "SELECT steadytext_generate_async('Once upon a time there', 400, use_cache => false)::text",
            &[],
        )
        .unwrap()
        .get(0);
    wait_until(Duration::from_secs(60), "the second request to be processing", || {
        (status_of(&mut admin, &id) == "processing").then_some(())
    });
    let cancelled: bool =
        alice.query_one("SELECT steadytext_cancel_async($1::text::uuid)", &[&id]).unwrap().get(0);
    assert!(cancelled);
    assert_eq!(status_of(&mut admin, &id), "cancelled");
}
