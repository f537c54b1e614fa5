//! Integration tier: `steadytext worker` draining steadytext_queue of a throwaway cluster with
//! the installed extension — ordering, crashes, restarts, cancel, timeouts, settings.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use steadytext_api::metric_names::{ENGINE_ABANDONED, GENERATED_TOKENS, QUEUE_JOBS};
use steadytext_api::notifications::{Completion, Outcome, COMPLETED_CHANNEL};
use support::cluster::TestCluster;
use support::daemon::{wait_until, Daemon};

/// Creates the extension and the worker role `st_worker`.
fn setup(cluster: &TestCluster) -> Client {
    support::extension_with_worker_role(cluster)
}

fn worker(cluster: &TestCluster, id: &str, extra: &[&str]) -> Daemon {
    let url = cluster.url("st_worker");
    Daemon::worker(&[&queue_args(&url, id)[..], extra].concat())
}

/// The queue flags every test worker runs with: the cluster, its id, a 3 s lease.
fn queue_args<'a>(url: &'a str, id: &'a str) -> [&'a str; 6] {
    ["--database-url", url, "--worker-id", id, "--lease", "3"]
}

/// Waits until nothing is pending or processing.
fn drained(db: &mut Client, deadline: Duration) -> HashMap<String, i64> {
    wait_until(deadline, "the queue to drain", || {
        let s = support::queue_statuses(db);
        (!s.contains_key("pending") && !s.contains_key("processing")).then_some(s)
    })
}

fn enqueue_generate(db: &mut Client, prompt: &str, max_tokens: i32, use_cache: bool) -> String {
    db.query_one(
        "SELECT steadytext_generate_async($1, $2, $3)::text",
        &[&prompt, &max_tokens, &use_cache],
    )
    .unwrap()
    .get(0)
}

/// The largest number of requests claimed together (a claim shares its started_at).
fn largest_claim(db: &mut Client) -> i64 {
    db.query_one(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM steadytext_queue GROUP BY started_at) t",
        &[],
    )
    .unwrap()
    .get(0)
}

fn status_of(db: &mut Client, id: &str) -> String {
    db.query_one("SELECT status FROM steadytext_queue WHERE request_id = $1::text::uuid", &[&id])
        .unwrap()
        .get(0)
}

#[test]
fn drains_500_mixed_jobs_highest_priority_first() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    let mut tx = db.transaction().unwrap();
    for i in 0..500i32 {
        let priority = (i * 7) % 11 - 5;
        let prompt = format!("Item {} is", i % 5);
        let sql = match i % 6 {
            0 => "SELECT steadytext_generate_async($1, 4, priority => $2)",
            1 => "SELECT steadytext_embed_async('text ' || $1, priority => $2)",
            2 => "SELECT steadytext_rerank_async($1, ARRAY['a document about items', 'bananas'], priority => $2)",
            3 => concat!(
                "SELECT steadytext_generate_json_async($1, '{\"type\":\"object\",",
                "\"properties\":{\"ok\":{\"type\":\"boolean\"}},\"required\":[\"ok\"],",
                "\"additionalProperties\":false}', 24, priority => $2)"
            ),
            4 => "SELECT steadytext_generate_regex_async($1, '[0-9]{3}', 8, priority => $2)",
            _ => "SELECT steadytext_generate_choice_async($1, ARRAY['yes', 'no'], 8, priority => $2)",
        };
        tx.execute(sql, &[&prompt, &priority]).unwrap();
    }
    tx.commit().unwrap();
    let _w = worker(&cluster, "w500", &["--concurrency", "8"]);
    let done = drained(&mut db, Duration::from_secs(600));
    assert_eq!(done.get("completed"), Some(&500), "{done:?}");

    // claims happen in priority order: every batch's lowest priority is at least the next
    // batch's highest (a batch shares its started_at)
    let batches: Vec<(i32, i32)> = db
        .query(
            "SELECT min(priority), max(priority) FROM steadytext_queue
             GROUP BY started_at ORDER BY started_at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(batches.len() >= 500 / 8, "{batches:?}");
    for pair in batches.windows(2) {
        assert!(pair[0].0 >= pair[1].1, "a lower priority was claimed first: {batches:?}");
    }

    // every result has its function's shape
    let bad: i64 = db
        .query_one(
            "SELECT count(*) FROM steadytext_queue WHERE NOT CASE function_name
               WHEN 'generate' THEN length(result) > 0
               WHEN 'embed' THEN result ~ '^\\[' AND array_length(string_to_array(trim(both '[]' from result), ','), 1) = 384
               WHEN 'rerank' THEN (result::jsonb ->> 'method') = 'embedding-cosine'
                              AND jsonb_array_length(result::jsonb -> 'results') = 2
               WHEN 'generate_json' THEN jsonb_typeof(result::jsonb -> 'ok') = 'boolean'
               WHEN 'generate_regex' THEN result ~ '^[0-9]{3}$'
               WHEN 'generate_choice' THEN result IN ('yes', 'no')
             END",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "results of the wrong shape");
    // same request, same bytes, whatever batch it ran in
    let spread: i64 = db
        .query_one(
            "SELECT max(n) FROM (SELECT count(DISTINCT result) AS n FROM steadytext_queue
                                 GROUP BY function_name, parameters) t",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(spread, 1);
}

#[test]
fn a_killed_workers_jobs_are_rescued_and_complete_exactly_once() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    let mut listener = cluster.connect();
    listener.batch_execute(&format!("LISTEN {COMPLETED_CHANNEL}")).unwrap();
    let ids: Vec<String> =
        (0..6).map(|i| enqueue_generate(&mut db, &format!("Story {i}:"), 48, false)).collect();
    let mut a = worker(&cluster, "A", &["--concurrency", "2"]);
    let held: Vec<String> = wait_until(Duration::from_secs(60), "A to hold jobs", || {
        let rows = db
            .query(
                "SELECT request_id::text FROM steadytext_queue
                 WHERE status = 'processing' AND worker_id = 'A'",
                &[],
            )
            .unwrap();
        (!rows.is_empty()).then(|| rows.iter().map(|r| r.get(0)).collect())
    });
    a.kill9();
    let _b = worker(&cluster, "B", &["--concurrency", "2"]);
    let done = drained(&mut db, Duration::from_secs(600));
    assert_eq!(done.get("completed"), Some(&6), "{done:?}");
    for id in &held {
        let row = db
            .query_one(
                "SELECT retry_count, worker_id FROM steadytext_queue
                 WHERE request_id = $1::text::uuid",
                &[id],
            )
            .unwrap();
        let (retries, by): (i32, String) = (row.get(0), row.get(1));
        assert!(retries >= 1 && by == "B", "{id}: retries {retries}, completed by {by}");
    }
    let mut completions: HashMap<String, usize> = HashMap::new();
    let mut notes = listener.notifications();
    let mut it = notes.timeout_iter(Duration::from_secs(5));
    while let Some(n) = it.next().unwrap() {
        let notice = Completion::parse(n.payload()).unwrap();
        assert_eq!(notice.status, Outcome::Completed);
        *completions.entry(notice.request_id).or_default() += 1;
        if completions.len() == ids.len() {
            break;
        }
    }
    for id in &ids {
        assert_eq!(completions.get(id), Some(&1), "completion notifications of {id}");
    }
}

#[test]
fn a_postgres_restart_mid_run_loses_nothing() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    // long enough that the restart lands while a batch is being processed
    for i in 0..8 {
        enqueue_generate(&mut db, &format!("Fact {i}:"), 120, false);
    }
    let mut w = worker(&cluster, "R", &["--concurrency", "2"]);
    wait_until(Duration::from_secs(600), "a completion and a batch in progress", || {
        let s = support::queue_statuses(&mut db);
        (s.get("completed").copied().unwrap_or(0) >= 1 && s.contains_key("processing"))
            .then_some(())
    });
    cluster.restart();
    w.wait_for_log("reconnecting", Duration::from_secs(30));
    // the reconnected session gives back what its broken session held, at once (its own
    // heartbeats would otherwise keep those leases alive for ever)
    w.wait_for_log("released", Duration::from_secs(30));
    let mut db = cluster.connect();
    let done = drained(&mut db, Duration::from_secs(600));
    assert_eq!(done.get("completed"), Some(&8), "{done:?}");
}

#[test]
fn a_cancelled_processing_job_is_never_written_and_sigterm_stops_cleanly() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    let mut w = worker(&cluster, "C", &["--concurrency", "1"]);
    let long = enqueue_generate(&mut db, "A very long story begins:", 300, false);
    wait_until(Duration::from_secs(60), "the job to be processing", || {
        (status_of(&mut db, &long) == "processing").then_some(())
    });
    let cancelled: bool =
        db.query_one("SELECT steadytext_cancel_async($1::text::uuid)", &[&long]).unwrap().get(0);
    assert!(cancelled);
    // with concurrency 1 the next job is claimed once the cancelled one has been stopped
    let next = enqueue_generate(&mut db, "Short:", 2, false);
    wait_until(Duration::from_secs(120), "the next job", || {
        (status_of(&mut db, &next) == "completed").then_some(())
    });
    let row = db
        .query_one(
            "SELECT status, result IS NULL FROM steadytext_queue WHERE request_id = $1::text::uuid",
            &[&long],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("cancelled".into(), true));

    // SIGTERM while a job runs: the job is finished, then the worker marks itself stopped
    let last = enqueue_generate(&mut db, "Another story:", 24, false);
    wait_until(Duration::from_secs(60), "the last job to be processing", || {
        (status_of(&mut db, &last) == "processing").then_some(())
    });
    assert!(w.terminate(Duration::from_secs(60)).success());
    assert_eq!(status_of(&mut db, &last), "completed");
    let state: String = db
        .query_one("SELECT status FROM steadytext_workers WHERE worker_id = 'C'", &[])
        .unwrap()
        .get(0);
    assert_eq!(state, "stopped");
}

#[test]
fn a_job_over_the_timeout_is_retried_then_fails_for_good() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    set_and_reload(&mut db, "steadytext.worker_timeout", "1");
    // `serve` with a database both drains the queue and answers /metrics; it is ready (its
    // ready file written) once its worker listens
    let url = cluster.url("st_worker");
    let d = Daemon::serve(&[&queue_args(&url, "T")[..], &["--max-retries", "2"]].concat());
    let id = enqueue_generate(&mut db, "An endless tale:", 2000, false);
    wait_until(Duration::from_secs(90), "the job to fail for good", || {
        (status_of(&mut db, &id) == "failed").then_some(())
    });
    let row = db
        .query_one(
            "SELECT retry_count, error, result IS NULL FROM steadytext_queue
             WHERE request_id = $1::text::uuid",
            &[&id],
        )
        .unwrap();
    let (retries, error, no_result): (i32, String, bool) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(retries, 2);
    assert!(error.contains("timed out after 1 s"), "{error}");
    assert!(no_result);

    // Each of the 3 timed-out attempts was stopped in the engine (or dropped before it started,
    // which counts the same), not left decoding to its 2000 tokens: the engine checks before
    // every step whether a sequence is still wanted, so the counter reaches 3 whatever the
    // machine's load, and no fourth attempt exists to take it further. (An earlier version
    // enqueued a short job after lifting the limit as a barrier; on a loaded machine that job
    // could itself time out before the worker's session read the new limit.)
    let abandoned = wait_until(Duration::from_secs(60), "3 abandoned generations", || {
        let n = counter(&d, ENGINE_ABANDONED, "kind=\"generate\"");
        (n >= 3.0).then_some(n)
    });
    assert_eq!(abandoned, 3.0, "abandoned generations");
    assert_eq!(status_of(&mut db, &id), "failed", "and the job stays failed");
}

/// The value of an unlabelled counter (or the sum of a labelled one's series matching
/// `labels`) in `/metrics` of `d`; 0 when it has no series yet.
fn counter(d: &Daemon, name: &str, labels: &str) -> f64 {
    let (status, text) = d.request("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            *series == name || (series.starts_with(&format!("{name}{{")) && series.contains(labels))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

#[test]
fn short_requests_complete_beside_a_long_one_and_cancelling_it_stops_its_decoding() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    let url = cluster.url("st_worker");
    let d = Daemon::serve(&[&queue_args(&url, "K")[..], &["--concurrency", "2"]].concat());
    let tokens = GENERATED_TOKENS;
    let long = enqueue_generate(&mut db, "A very long story begins:", 1024, false);
    wait_until(Duration::from_secs(120), "the long generation to be decoding", || {
        (counter(&d, tokens, "") >= 1.0).then_some(())
    });
    // a short generation and an embedding complete while the long one keeps decoding: the
    // short one joins the running decode batch, the embedding runs between two steps, and
    // each is completed the moment it ends
    let short = enqueue_generate(&mut db, "Short:", 4, false);
    let embed: String = db
        .query_one("SELECT steadytext_embed_async('a text', use_cache => false)::text", &[])
        .unwrap()
        .get(0);
    wait_until(Duration::from_secs(120), "the short requests", || {
        (status_of(&mut db, &short) == "completed" && status_of(&mut db, &embed) == "completed")
            .then_some(())
    });
    assert_eq!(status_of(&mut db, &long), "processing", "the long one is still running");

    let cancelled: bool =
        db.query_one("SELECT steadytext_cancel_async($1::text::uuid)", &[&long]).unwrap().get(0);
    assert!(cancelled);
    wait_until(Duration::from_secs(60), "the engine to stop the cancelled generation", || {
        (counter(&d, ENGINE_ABANDONED, "kind=\"generate\"") == 1.0).then_some(())
    });
    let next = enqueue_generate(&mut db, "Next:", 2, false);
    wait_until(Duration::from_secs(120), "a request queued after the cancel", || {
        (status_of(&mut db, &next) == "completed").then_some(())
    });
    // stopped early: far fewer than the 1024 tokens it asked for were decoded in all
    let decoded = counter(&d, tokens, "");
    assert!(decoded < 1024.0, "{decoded} tokens decoded: the cancelled generation ran on");
    let cancelled_jobs = counter(&d, QUEUE_JOBS, "outcome=\"cancelled\"");
    assert_eq!(cancelled_jobs, 1.0, "the worker recorded the cancelled job");
    let row = db
        .query_one(
            "SELECT status, result IS NULL FROM steadytext_queue WHERE request_id = $1::text::uuid",
            &[&long],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("cancelled".into(), true));
}

/// `ALTER SYSTEM SET name = value`, then a configuration reload.
fn set_and_reload(db: &mut Client, name: &str, value: &str) {
    db.batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'")).unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
}

#[test]
fn settings_come_from_gucs_after_reload_unless_flags_win() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    // the default, 0: as many at once as the engine decodes together (--max-batch)
    let mut d = worker(&cluster, "D", &["--max-batch", "5"]);
    let mut tx = db.transaction().unwrap();
    for i in 0..10 {
        tx.execute("SELECT steadytext_generate_async($1, 2)", &[&format!("D{i}")]).unwrap();
    }
    tx.commit().unwrap();
    drained(&mut db, Duration::from_secs(120));
    assert_eq!(largest_claim(&mut db), 5, "claims fill the engine's batch by default");
    d.kill9();
    db.batch_execute("DELETE FROM steadytext_queue").unwrap();

    let mut g = worker(&cluster, "G", &[]);
    // changed while the worker runs
    set_and_reload(&mut db, "steadytext.worker_concurrency", "3");
    let mut tx = db.transaction().unwrap();
    for i in 0..6 {
        tx.execute("SELECT steadytext_generate_async($1, 2)", &[&format!("G{i}")]).unwrap();
    }
    tx.commit().unwrap();
    drained(&mut db, Duration::from_secs(120));
    let largest = largest_claim(&mut db);
    assert_eq!(largest, 3, "claims follow steadytext.worker_concurrency");
    g.kill9();

    // a flag beats the GUC
    db.batch_execute("DELETE FROM steadytext_queue").unwrap();
    let _f = worker(&cluster, "F", &["--concurrency", "1"]);
    let mut tx = db.transaction().unwrap();
    for i in 0..4 {
        tx.execute("SELECT steadytext_generate_async($1, 2)", &[&format!("F{i}")]).unwrap();
    }
    tx.commit().unwrap();
    drained(&mut db, Duration::from_secs(120));
    let largest = largest_claim(&mut db);
    assert_eq!(largest, 1, "--concurrency overrides the GUC");

    // two embeddings share a slot: with one slot, two of them are processed at once
    db.batch_execute("DELETE FROM steadytext_queue").unwrap();
    let mut tx = db.transaction().unwrap();
    for i in 0..12 {
        tx.execute("SELECT steadytext_embed_async($1, false)", &[&format!("E{i}")]).unwrap();
    }
    tx.commit().unwrap();
    let done = drained(&mut db, Duration::from_secs(120));
    assert_eq!(done.get("completed"), Some(&12), "{done:?}");
    assert_eq!(most_at_once(&mut db), 2, "embeddings at once with --concurrency 1");
    // claimed by one statement each (their costs fill the free half slots), not one by one
    assert_eq!(largest_claim(&mut db), 2, "embeddings per claim with --concurrency 1");
}

/// The most requests that were processing at once, from their claims' and completions'
/// transaction times (a worker claims before it records what finished, so a request claimed
/// while another ran starts before that one's completion).
fn most_at_once(db: &mut Client) -> i64 {
    db.query_one(
        "SELECT max((SELECT count(*) FROM steadytext_queue b
                     WHERE b.started_at <= a.started_at AND b.completed_at > a.started_at))
         FROM steadytext_queue a",
        &[],
    )
    .unwrap()
    .get(0)
}

/// Finished requests: `n` of `status` that finished `ago` (an SQL interval) ago.
fn insert_finished(db: &mut Client, status: &str, n: i32, ago: &str) {
    db.execute(
        "INSERT INTO steadytext_queue (function_name, parameters, status, result, error,
                                       started_at, completed_at, failed_at)
         SELECT 'generate', jsonb_build_object('prompt', $1 || ' ' || i), $1,
                CASE WHEN $1 = 'completed' THEN 'r' END,
                CASE WHEN $1 = 'failed' THEN 'boom' END,
                now() - $3::text::interval - interval '1 minute',
                CASE WHEN $1 <> 'failed' THEN now() - $3::text::interval END,
                CASE WHEN $1 = 'failed' THEN now() - $3::text::interval END
         FROM generate_series(1, $2) AS i",
        &[&status, &n, &ago],
    )
    .unwrap();
}

#[test]
fn the_worker_purges_finished_requests_older_than_the_retention_in_batches() {
    let cluster = TestCluster::start();
    let mut db = setup(&cluster);
    set_and_reload(&mut db, "steadytext.queue_retention", "1d");
    // more old rows than three purge batches of 500, so they go only if batches run back to back
    // (one batch a minute would take three minutes)
    insert_finished(&mut db, "completed", 1200, "2 days");
    insert_finished(&mut db, "failed", 150, "3 days");
    insert_finished(&mut db, "cancelled", 150, "25 hours");
    // finished within the retention: kept
    insert_finished(&mut db, "completed", 5, "1 hour");
    insert_finished(&mut db, "failed", 5, "23 hours");
    insert_finished(&mut db, "cancelled", 5, "1 minute");
    let _w = worker(&cluster, "P", &[]);
    let left =
        wait_until(Duration::from_secs(45), "the old finished requests to be purged", || {
            let s = support::queue_statuses(&mut db);
            (s.values().sum::<i64>() == 15).then_some(s)
        });
    assert_eq!(
        left,
        HashMap::from([
            ("completed".to_owned(), 5),
            ("failed".to_owned(), 5),
            ("cancelled".to_owned(), 5)
        ]),
        "exactly the requests finished within the retention are left"
    );
    let recent: i64 = db
        .query_one(
            "SELECT count(*) FROM steadytext_queue
             WHERE coalesce(completed_at, failed_at) > now() - interval '1 day'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(recent, 15);
}
