//! Integration tier: `steadytext_get_async_result` is woken by the commit that finishes its
//! request when pg_steadytext is in `shared_preload_libraries` (a shared-memory condition
//! variable), and polls otherwise. `steadytext_wait_stats()` tells how the waiter's sleeps ended,
//! so the tests check the mechanism itself rather than trusting timings; the wake-up latencies
//! (completing COMMIT sent → waiter's result received) are printed for the record.

mod support;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Client;
use support::cluster::TestCluster;

/// Setting that preloads the library.
const PRELOAD: &str = "shared_preload_libraries=pg_steadytext";
/// How long setup steps may take before a test gives up.
const DEADLINE: Duration = Duration::from_secs(30);

/// One row of `steadytext_wait_stats()`.
#[derive(Debug)]
struct WaitStats {
    mechanism: String,
    completion_wakeups: i64,
    timer_wakeups: i64,
    completions: Option<i64>,
}

fn wait_stats(db: &mut Client) -> WaitStats {
    let row = db
        .query_one(
            "SELECT mechanism, completion_wakeups, timer_wakeups, completions
             FROM steadytext_wait_stats()",
            &[],
        )
        .unwrap();
    WaitStats {
        mechanism: row.get(0),
        completion_wakeups: row.get(1),
        timer_wakeups: row.get(2),
        completions: row.get(3),
    }
}

fn setup(cluster: &TestCluster) -> Client {
    let mut db = cluster.connect();
    db.batch_execute("CREATE EXTENSION pg_steadytext").unwrap();
    db
}

/// Enqueues (and commits) a generate request; returns its id as text.
fn enqueue(db: &mut Client, prompt: &str) -> String {
    db.query_one("SELECT steadytext_generate_async($1, 8)::text", &[&prompt]).unwrap().get(0)
}

/// What a waiting session saw.
struct Waited {
    /// The result, or the error's SQLSTATE and message.
    outcome: Result<String, (String, String)>,
    /// When the waiter had the answer.
    at: Instant,
    /// `steadytext_wait_stats()` right after.
    stats: WaitStats,
}

/// Starts a session waiting up to 30 s for `id`; returns once it is asleep in the wait (its
/// backend shows wait event `Extension` in pg_stat_activity) and has been waiting for at least
/// `waited` (long waits reach the polling fallback's 500 ms pauses and the 1 s safety net).
fn start_waiter(
    cluster: &TestCluster,
    observer: &mut Client,
    id: &str,
    waited: Duration,
) -> JoinHandle<Waited> {
    let mut db = cluster.connect();
    let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let id = id.to_owned();
    let handle = std::thread::spawn(move || {
        let result = db.query_one("SELECT steadytext_get_async_result($1::text::uuid, 30)", &[&id]);
        let at = Instant::now();
        let outcome = match result {
            Ok(row) => Ok(row.get::<_, String>(0)),
            Err(e) => {
                let db = e.as_db_error().expect("a database error");
                Err((db.code().code().to_owned(), db.message().to_owned()))
            }
        };
        Waited { outcome, at, stats: wait_stats(&mut db) }
    });
    let start = Instant::now();
    loop {
        let sleeping: bool = observer
            .query_one(
                "SELECT coalesce(bool_or(state = 'active' AND wait_event = 'Extension'
                                         AND clock_timestamp() - query_start
                                             >= $2 * interval '1 second'), false)
                 FROM pg_stat_activity WHERE pid = $1",
                &[&pid, &waited.as_secs_f64()],
            )
            .unwrap()
            .get(0);
        if sleeping {
            return handle;
        }
        assert!(!handle.is_finished(), "the waiter returned before anything finished its request");
        assert!(start.elapsed() < DEADLINE, "the waiter did not start waiting within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Claims request `id` as worker `w1` and applies `finish` (SQL with `$1` = the id) in one
/// transaction; returns when COMMIT was sent.
fn finish_and_commit(worker: &mut Client, id: &str, finish: &str) -> Instant {
    worker.batch_execute("BEGIN").unwrap();
    let claimed: Vec<String> = worker
        .query("SELECT request_id::text FROM steadytext_queue_claim('w1', 10)", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(claimed, vec![id.to_owned()]);
    worker.execute(finish, &[&id]).unwrap();
    let sent = Instant::now();
    worker.batch_execute("COMMIT").unwrap();
    sent
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[test]
fn preloaded_waiters_are_woken_by_the_finishing_commit() {
    let cluster = TestCluster::start_with(&[PRELOAD]);
    let mut db = setup(&cluster);
    let mut worker = cluster.connect();
    let stats = wait_stats(&mut db);
    assert_eq!(stats.mechanism, "condition_variable");
    let before = stats.completions.expect("a completion counter when preloaded");

    let mut latencies = Vec::new();
    for round in 0..7 {
        let id = enqueue(&mut db, &format!("wake me {round}"));
        // The first round waits past the 1 s safety net first.
        let long = round == 0;
        let waiter = start_waiter(
            &cluster,
            &mut db,
            &id,
            if long { Duration::from_millis(1500) } else { Duration::ZERO },
        );
        let sent = finish_and_commit(
            &mut worker,
            &id,
            "SELECT steadytext_queue_complete($1::text::uuid, 'w1', 'woken')",
        );
        let waited = waiter.join().unwrap();
        assert_eq!(waited.outcome, Ok("woken".to_owned()), "round {round}");
        // The sleep ended because the commit bumped the counter, not at the 1 s safety net.
        assert_eq!(waited.stats.mechanism, "condition_variable");
        assert_eq!(waited.stats.completion_wakeups, 1, "round {round}: {:?}", waited.stats);
        if long {
            // One sleep ended at the safety net meanwhile (and found nothing finished).
            assert!(waited.stats.timer_wakeups >= 1, "{:?}", waited.stats);
        }
        latencies.push(waited.at.saturating_duration_since(sent));
    }
    let ms: Vec<String> =
        latencies.iter().map(|d| format!("{:.2}", d.as_secs_f64() * 1e3)).collect();
    let median = median(latencies.clone());
    println!(
        "preloaded wake-up latency (COMMIT sent -> result received), ms: [{}]; median {:.2}",
        ms.join(", "),
        median.as_secs_f64() * 1e3
    );
    // Polling at up to 500 ms steps would typically take far longer; the counters above already
    // prove the mechanism, this bounds the typical case.
    assert!(median < Duration::from_millis(100), "median wake-up latency {median:?}");

    // Each finishing commit bumped the counter once (the claims did not).
    let after = wait_stats(&mut db).completions.unwrap();
    assert_eq!(after - before, 7);
}

#[test]
fn preloaded_waiters_are_woken_by_failure_and_cancellation_but_not_by_a_rollback() {
    let cluster = TestCluster::start_with(&[PRELOAD]);
    let mut db = setup(&cluster);
    let mut worker = cluster.connect();

    // A finishing transaction that rolls back wakes nobody and bumps nothing.
    let id = enqueue(&mut db, "rolled back");
    let before = wait_stats(&mut db).completions.unwrap();
    worker.batch_execute("BEGIN").unwrap();
    worker.query("SELECT steadytext_queue_claim('w1', 10)", &[]).unwrap();
    worker
        .execute("SELECT steadytext_queue_complete($1::text::uuid, 'w1', 'never')", &[&id])
        .unwrap();
    worker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(wait_stats(&mut db).completions.unwrap(), before);

    // Failing for good wakes the waiter, which reports the failure.
    let waiter = start_waiter(&cluster, &mut db, &id, Duration::ZERO);
    finish_and_commit(
        &mut worker,
        &id,
        "SELECT steadytext_queue_fail($1::text::uuid, 'w1', 'model exploded', retryable => false)",
    );
    let waited = waiter.join().unwrap();
    let (code, message) = waited.outcome.unwrap_err();
    assert_eq!(code, "38000");
    assert!(message.ends_with("failed: model exploded"), "{message}");
    assert_eq!(waited.stats.completion_wakeups, 1, "{:?}", waited.stats);

    // A retryable failure puts the request back to pending: no wake-up.
    let id = enqueue(&mut db, "retried");
    let before = wait_stats(&mut db).completions.unwrap();
    finish_and_commit(
        &mut worker,
        &id,
        "SELECT steadytext_queue_fail($1::text::uuid, 'w1', 'flaky')",
    );
    assert_eq!(wait_stats(&mut db).completions.unwrap(), before);

    // Cancelling wakes the waiter at once, also when an ordinary role (not a steadytext_worker
    // member) cancels its own request.
    db.batch_execute("CREATE ROLE wait_alice").unwrap();
    let mut alice = cluster.connect();
    alice.batch_execute("SET ROLE wait_alice").unwrap();
    let id = enqueue(&mut alice, "cancel me");
    let waiter = start_waiter(&cluster, &mut db, &id, Duration::ZERO);
    let cancelled: bool =
        alice.query_one("SELECT steadytext_cancel_async($1::text::uuid)", &[&id]).unwrap().get(0);
    assert!(cancelled);
    let waited = waiter.join().unwrap();
    let (code, message) = waited.outcome.unwrap_err();
    assert_eq!(code, "55000");
    assert!(message.ends_with("was cancelled"), "{message}");
    assert_eq!(waited.stats.completion_wakeups, 1, "{:?}", waited.stats);
}

#[test]
fn preloaded_waits_still_obey_statement_timeout_and_cancel() {
    let cluster = TestCluster::start_with(&[PRELOAD]);
    let mut db = setup(&cluster);
    let id = enqueue(&mut db, "nobody works on this");

    let mut waiter = cluster.connect();
    waiter.batch_execute("SET statement_timeout = '300ms'").unwrap();
    let start = Instant::now();
    let err = waiter
        .query_one("SELECT steadytext_get_async_result($1::text::uuid, 30)", &[&id])
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "statement_timeout took {:?}",
        start.elapsed()
    );
    waiter.batch_execute("RESET statement_timeout").unwrap();

    // pg_cancel_backend interrupts a waiter asleep on the condition variable.
    let waiting = start_waiter(&cluster, &mut db, &id, Duration::ZERO);
    db.execute(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
         WHERE wait_event = 'Extension' AND pid <> pg_backend_pid()",
        &[],
    )
    .unwrap();
    let waited = waiting.join().unwrap();
    assert_eq!(waited.outcome.unwrap_err().0, "57014");

    // The timeout of the function itself still reports the request's status.
    let err = waiter
        .query_one("SELECT steadytext_get_async_result($1::text::uuid, 1)", &[&id])
        .unwrap_err();
    let db_err = err.as_db_error().unwrap();
    assert_eq!(db_err.code().code(), "55000");
    assert!(db_err.message().contains("(status pending)"), "{}", db_err.message());
    let stats = wait_stats(&mut waiter);
    assert_eq!((stats.completion_wakeups, stats.timer_wakeups), (0, 1), "{stats:?}");
}

#[test]
fn without_preloading_waiters_poll() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    let mut worker = cluster.connect();
    let stats = wait_stats(&mut db);
    assert_eq!(stats.mechanism, "polling");
    assert_eq!(stats.completions, None);

    let id = enqueue(&mut db, "poll for me");
    // Long enough for the pauses to have grown to 500 ms.
    let waiter = start_waiter(&cluster, &mut db, &id, Duration::from_millis(1500));
    let sent = finish_and_commit(
        &mut worker,
        &id,
        "SELECT steadytext_queue_complete($1::text::uuid, 'w1', 'polled')",
    );
    let waited = waiter.join().unwrap();
    assert_eq!(waited.outcome, Ok("polled".to_owned()));
    assert_eq!(waited.stats.mechanism, "polling");
    assert_eq!(waited.stats.completion_wakeups, 0);
    assert!(waited.stats.timer_wakeups >= 7, "{:?}", waited.stats);
    println!(
        "polling wake-up latency (COMMIT sent -> result received): {:.2} ms after {} polls",
        waited.at.saturating_duration_since(sent).as_secs_f64() * 1e3,
        waited.stats.timer_wakeups
    );
}
