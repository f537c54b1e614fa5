//! Integration tier: the dashboard (`/ui` of `steadytext serve`) in a real browser, headless
//! Chromium through chromedriver, against a throwaway cluster whose queue the daemon's worker
//! drains. Screenshots of each page are saved under `target/ui-screenshots/`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use postgres::Client;
use support::browser::Browser;
use support::cluster::TestCluster;
use support::daemon::{wait_until, Daemon};

/// A prompt that would run script if the dashboard did not escape what users supplied.
const HOSTILE: &str =
    "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">";

fn status_of(db: &mut Client, id: &str) -> String {
    db.query_one("SELECT status FROM steadytext_queue WHERE request_id = $1::text::uuid", &[&id])
        .unwrap()
        .get(0)
}

fn enqueue(db: &mut Client, prompt: &str, max_tokens: i32) -> String {
    db.query_one(
        "SELECT steadytext_generate_async($1, $2, use_cache => false)::text",
        &[&prompt, &max_tokens],
    )
    .unwrap()
    .get(0)
}

/// (function, status) → count, as SQL counts them.
fn counts(db: &mut Client) -> HashMap<(String, String), i64> {
    db.query("SELECT function_name, status, count(*) FROM steadytext_queue GROUP BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

#[test]
fn the_dashboard_shows_the_queue_as_sql_does_cancels_and_updates_live() {
    let cluster = TestCluster::start();
    let mut db = support::extension_with_worker_role(&cluster);
    let url = cluster.url("st_worker");
    let serve = Daemon::serve(&["--database-url", &url, "--concurrency", "1", "--ui-actions"]);
    let ui = |path: &str| format!("{}{path}", serve.url);

    let hostile = enqueue(&mut db, HOSTILE, 2);
    db.batch_execute("SELECT steadytext_embed_async('a text to embed')").unwrap();
    wait_until(Duration::from_secs(120), "the first requests to complete", || {
        (status_of(&mut db, &hostile) == "completed").then_some(())
    });
    // a derivation: its request serves a row of docs
    db.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, body text, embedding real[]);
         SELECT steadytext_derive('docs', 'embedding', 'body');
         INSERT INTO docs VALUES (1, 'a derived document');",
    )
    .unwrap();
    wait_until(Duration::from_secs(120), "the derivation to write the embedding", || {
        let done: bool = db
            .query_one("SELECT embedding IS NOT NULL FROM docs WHERE id = 1", &[])
            .unwrap()
            .get(0);
        done.then_some(())
    });
    let (derived, derivation): (String, i64) = {
        let r = db
            .query_one(
                "SELECT request_id::text, derivation_id FROM steadytext_queue
                 WHERE derivation_id IS NOT NULL",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    // the only slot decodes a long generation; what is enqueued next stays pending
    let long = enqueue(&mut db, "A very long story begins:", 1024);
    wait_until(Duration::from_secs(60), "the long generation to start", || {
        (status_of(&mut db, &long) == "processing").then_some(())
    });
    let victim = enqueue(&mut db, "Cancel me from the dashboard", 4);
    let live = enqueue(&mut db, "Watch me complete", 4);

    let browser = Browser::start();

    // overview: every count is SQL's
    browser.goto(&ui("/ui"));
    assert_eq!(browser.text("h1").as_deref(), Some("Overview"));
    let sql = counts(&mut db);
    let cells = browser.attributes("table.counts tbody td[data-status]", "data-status");
    let functions = browser.attributes("table.counts tbody td[data-status]", "data-function");
    let shown = browser.texts("table.counts tbody td[data-status]");
    assert!(!shown.is_empty());
    for ((status, function), text) in cells.iter().zip(&functions).zip(&shown) {
        let key = (function.clone().unwrap(), status.clone().unwrap());
        let expected = sql.get(&key).copied().unwrap_or(0);
        assert_eq!(text.parse::<i64>().unwrap(), expected, "{key:?}");
    }
    let total: i64 = sql.values().sum();
    assert_eq!(browser.text("#total-all").unwrap().parse::<i64>().unwrap(), total);
    // every request was enqueued within the hour: the minutes add up to all of them
    let enqueued: i64 = browser
        .texts("table.minutes tbody td:nth-child(2)")
        .iter()
        .map(|t| t.parse::<i64>().unwrap())
        .sum();
    assert_eq!(enqueued, total, "requests enqueued in the last hour");
    let workers = browser.text("#workers + table").unwrap();
    assert!(workers.contains("running"), "the daemon's worker: {workers}");
    assert!(workers.contains("generation: "), "its models: {workers}");
    // the chart of the last hour (uPlot, served by the daemon)
    wait_until(Duration::from_secs(10), "the chart to be drawn", || {
        (browser.eval("return document.querySelectorAll('#throughput-chart canvas').length")
            == serde_json::json!(1))
        .then_some(())
    });
    browser.screenshot("overview");

    // the derivation, paused and resumed from the overview
    let state = |db: &mut Client| -> String {
        db.query_one("SELECT state FROM steadytext_derivations WHERE id = $1", &[&derivation])
            .unwrap()
            .get(0)
    };
    assert_eq!(
        browser.text(&format!("tr[data-derivation='{derivation}'] td.state")).as_deref(),
        Some("active")
    );
    browser.click(&format!("form[action='/ui/derivations/{derivation}/pause'] button"));
    wait_until(Duration::from_secs(10), "the pause to reach the table", || {
        (state(&mut db) == "paused").then_some(())
    });
    wait_until(Duration::from_secs(10), "the resume button", || {
        browser
            .text(&format!("form[action='/ui/derivations/{derivation}/resume'] button"))
            .map(drop)
    });
    browser.click(&format!("form[action='/ui/derivations/{derivation}/resume'] button"));
    wait_until(Duration::from_secs(10), "the resume to reach the table", || {
        (state(&mut db) == "active").then_some(())
    });
    // and what its request serves
    browser.goto(&ui(&format!("/ui/requests/{derived}")));
    let serves = browser.text("#serves").unwrap();
    assert!(serves.contains("embedding of the row of public.docs"), "{serves}");
    assert!(serves.contains(r#"{"id":1}"#), "{serves}");

    // the list: every request, newest first; filtered by status
    browser.goto(&ui("/ui/requests"));
    let ids = browser.attributes("table.list tbody tr", "data-request");
    assert_eq!(ids.len() as i64, total);
    assert_eq!(ids[0].as_deref(), Some(live.as_str()), "newest first");
    browser.screenshot("requests");
    browser.goto(&ui("/ui/requests?status=pending"));
    let pending: Vec<_> = browser.attributes("table.list tbody tr", "data-request");
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert!(browser.texts("td.status").iter().all(|s| s == "pending"));

    // what users supplied shows as text and runs nothing
    browser.goto(&ui(&format!("/ui/requests/{hostile}")));
    let params = browser.text("#parameters").unwrap();
    assert!(params.contains("<script>window.__pwned = 1</script>"), "{params}");
    assert_eq!(browser.eval("return window.__pwned === undefined"), serde_json::json!(true));
    assert_eq!(
        browser.eval("return document.querySelectorAll('main script, main img').length"),
        serde_json::json!(0)
    );
    browser.screenshot("request-completed");

    // a pending request cancelled from its page is cancelled in the table
    browser.goto(&ui(&format!("/ui/requests/{victim}")));
    assert_eq!(browser.text("#status").as_deref(), Some("pending"));
    browser.click("#cancel");
    wait_until(Duration::from_secs(10), "the cancel to reach the table", || {
        (status_of(&mut db, &victim) == "cancelled").then_some(())
    });
    wait_until(Duration::from_secs(10), "the page to show it", || {
        (browser.text("#status").as_deref() == Some("cancelled")).then_some(())
    });

    // pending → completed on screen, without a reload by the test
    browser.goto(&ui(&format!("/ui/requests/{live}")));
    assert_eq!(browser.text("#status").as_deref(), Some("pending"));
    browser.screenshot("request-pending");
    db.execute("SELECT steadytext_cancel_async($1::text::uuid)", &[&long]).unwrap();
    wait_until(Duration::from_secs(120), "the page to show the request completed", || {
        (browser.text("#status").as_deref() == Some("completed")).then_some(())
    });
    assert_eq!(status_of(&mut db, &live), "completed");
    assert!(browser.text("#result").is_some_and(|r| !r.is_empty()));

    // a request that failed for good, retried from its page, completes
    let failed: String = db
        .query_one(
            "INSERT INTO steadytext_queue (function_name, parameters, status, error, failed_at)
             VALUES ('generate',
                     '{\"prompt\": \"Retry me\", \"max_tokens\": 3, \"seed\": 42,
                       \"use_cache\": false}',
                     'failed', 'the engine failed (planted by the test)', now())
             RETURNING request_id::text",
            &[],
        )
        .unwrap()
        .get(0);
    browser.goto(&ui(&format!("/ui/requests/{failed}")));
    assert!(browser.text("#error").unwrap().contains("planted by the test"));
    assert!(browser.text("#cancel").is_none(), "a failed request cannot be cancelled");
    browser.click("#retry");
    wait_until(Duration::from_secs(120), "the retried request to complete on screen", || {
        (browser.text("#status").as_deref() == Some("completed")).then_some(())
    });
    assert_eq!(status_of(&mut db, &failed), "completed");

    // phone width: the page still lays out (no horizontal scroll of the whole page)
    browser.resize(390, 844);
    browser.goto(&ui("/ui/requests"));
    let overflow =
        browser.eval("return document.documentElement.scrollWidth <= window.innerWidth + 1");
    browser.screenshot("requests-phone");
    assert_eq!(overflow, serde_json::json!(true), "the page is wider than a phone");

    // without JavaScript the lists are plain HTML
    let (code, body) = serve.request("GET", "/ui/requests?status=completed", &[], "");
    assert_eq!(code, 200);
    assert!(body.contains(&hostile), "the list without a browser");
}

#[test]
fn a_token_protected_dashboard_shows_nothing_without_the_token() {
    let cluster = TestCluster::start();
    let mut db = support::extension_with_worker_role(&cluster);
    let url = cluster.url("st_worker");
    let id: String =
        db.query_one("SELECT steadytext_embed_async('secret text')::text", &[]).unwrap().get(0);
    let serve = Daemon::serve(&["--database-url", &url, "--token", "s3cret-token"]);
    let ui = |path: &str| format!("{}{path}", serve.url);

    // plain HTTP: every page and the status feed send to the login form, and say nothing
    for path in
        ["/ui", "/ui/requests", &format!("/ui/requests/{id}"), &format!("/ui/requests/{id}/status")]
    {
        let (code, body) = serve.request("GET", path, &[], "");
        assert_eq!(code, 303, "{path}");
        assert!(!body.contains(&id) && !body.contains("secret text"), "{path}: {body}");
    }
    let (code, _) = serve.request("POST", &format!("/ui/requests/{id}/cancel"), &[], "csrf=x");
    assert_eq!(code, 303, "actions too");

    let browser = Browser::start();
    browser.goto(&ui(&format!("/ui/requests/{id}")));
    assert!(browser.url().ends_with("/ui/login"), "{}", browser.url());
    browser.screenshot("login");
    browser.type_into("input[name=token]", "not the token");
    browser.click("form[action='/ui/login'] button");
    wait_until(Duration::from_secs(10), "a wrong token to be refused", || {
        browser.text("[role=alert]").map(drop)
    });
    browser.type_into("input[name=token]", "s3cret-token");
    browser.click("form[action='/ui/login'] button");
    wait_until(Duration::from_secs(10), "the overview after the login", || {
        (browser.text("h1").as_deref() == Some("Overview")).then_some(())
    });
    browser.goto(&ui(&format!("/ui/requests/{id}")));
    assert!(browser.text("#parameters").unwrap().contains("secret text"));
}

/// The dashboard's backend, by its application name.
fn dashboard_pid(db: &mut Client) -> Option<i32> {
    db.query_opt(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'steadytext-dashboard'",
        &[],
    )
    .unwrap()
    .map(|r| r.get(0))
}

#[test]
fn a_refused_action_shows_its_sqlstate_and_an_old_extension_asks_for_the_update() {
    let cluster = TestCluster::start();
    let mut db = support::extension_with_worker_role(&cluster);
    db.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, body text, embedding real[]);
         SELECT steadytext_derive('docs', 'embedding', 'body');
         ALTER TABLE docs DROP COLUMN body;",
    )
    .unwrap();
    let derivation: i64 =
        db.query_one("SELECT id FROM steadytext_derivations", &[]).unwrap().get(0);
    let id: String = db.query_one("SELECT steadytext_embed_async('x')::text", &[]).unwrap().get(0);
    let serve = Daemon::serve(&[
        "--database-url",
        &cluster.url("st_worker"),
        "--concurrency",
        "1",
        "--ui-actions",
    ]);
    let (code, page) = serve.request("GET", &format!("/ui/requests/{id}"), &[], "");
    assert_eq!(code, 200, "{page}");
    let csrf = page
        .split_once("name=\"csrf\" value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value.to_owned())
        .expect("the request page's action forms carry the CSRF value");
    let pid = dashboard_pid(&mut db).expect("the dashboard's connection");
    let post = |path: &str| {
        serve.request(
            "POST",
            path,
            &["Content-Type: application/x-www-form-urlencoded"],
            &format!("csrf={csrf}"),
        )
    };
    // the database refuses: the page says why, with the SQLSTATE and its HTTP status
    let (code, page) = post(&format!("/ui/derivations/{derivation}/resume"));
    assert_eq!(code, 409, "{page}");
    assert!(page.contains("PostgreSQL refused it") && page.contains("SQLSTATE 55000"), "{page}");
    assert!(page.contains("is disabled"), "{page}");
    let (code, page) = post("/ui/derivations/987654/pause");
    assert_eq!(code, 404, "{page}");
    assert!(page.contains("no derivation 987654") && page.contains("SQLSTATE 42704"), "{page}");
    // ... and the connection is the same one, still serving pages
    assert_eq!(dashboard_pid(&mut db), Some(pid), "a refusal keeps the connection");
    assert_eq!(serve.request("GET", "/ui", &[], "").0, 200);
    drop(serve);

    // a database whose extension is still 0.1.0: every page says to update it
    let old = TestCluster::start();
    let mut old_db = old.connect();
    old_db
        .batch_execute(
            "CREATE EXTENSION pg_steadytext VERSION '0.1.0';
             CREATE ROLE st_worker LOGIN IN ROLE steadytext_worker;",
        )
        .unwrap();
    let serve = Daemon::serve(&["--database-url", &old.url("st_worker"), "--concurrency", "1"]);
    for path in ["/ui", "/ui/requests"] {
        let (code, page) = serve.request("GET", path, &[], "");
        assert_eq!(code, 503, "{path}: {page}");
        assert!(
            page.contains("pg_steadytext 0.1.0 is installed")
                && page.contains("ALTER EXTENSION pg_steadytext UPDATE"),
            "{path}: {page}"
        );
    }
    old_db.batch_execute("ALTER EXTENSION pg_steadytext UPDATE").unwrap();
    let (code, page) = serve.request("GET", "/ui", &[], "");
    assert_eq!(code, 200, "after the update: {page}");
}

/// The log entries (a first line and its continuation lines) of sessions named `app`.
fn log_entries_of(log: &str, app: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in log.lines() {
        // a new entry starts with the log_line_prefix below: "[app]"
        if line.starts_with('[') {
            if let Some(e) = current.take() {
                entries.push(e);
            }
            if line.starts_with(&format!("[{app}]")) {
                current = Some(line.to_owned());
            }
        } else if let Some(e) = current.as_mut() {
            e.push('\n');
            e.push_str(line);
        }
    }
    entries.extend(current);
    entries
}

#[test]
fn on_a_large_queue_every_page_reads_the_queue_through_its_indexes() {
    // every statement's plan in the server log (auto_explain), with its session's name
    let cluster = TestCluster::start_with(&[
        "session_preload_libraries=auto_explain",
        "auto_explain.log_min_duration=0",
        "log_line_prefix=[%a]",
    ]);
    let mut db = support::extension_with_worker_role(&cluster);
    // more rows than the overview counts exactly (its sampled path), fewer than the benchmark
    steadytext_testkit::queue_fill::fill_mixed(&mut db, 300_000).unwrap();
    db.batch_execute("VACUUM ANALYZE steadytext_queue").unwrap();
    // and a derivation whose bookkeeping holds as many rows: one in 1 000 failed, one in 500
    // with a request under way, the rest in sync
    db.batch_execute(
        "CREATE TABLE big_docs (id bigint PRIMARY KEY, body text, embedding real[]);
         SELECT steadytext_derive('big_docs', 'embedding', 'body');
         INSERT INTO steadytext_derivation_rows
             (derivation_id, source_key, input_hash, derived_hash, derived_epoch, request_id, error)
         SELECT d.id, jsonb_build_object('id', i), sha256(i::text::bytea),
                CASE WHEN i % 500 = 1 THEN NULL ELSE sha256(i::text::bytea) END, 1,
                CASE WHEN i % 500 = 1 THEN gen_random_uuid() END,
                CASE WHEN i % 1000 = 0 THEN 'boom ' || i END
         FROM steadytext_derivations d, generate_series(1, 300000) AS i;",
    )
    .unwrap();
    db.batch_execute("VACUUM ANALYZE steadytext_derivation_rows").unwrap();
    for sql in ["ALTER SYSTEM SET steadytext.queue_retention = 0", "SELECT pg_reload_conf()"] {
        db.batch_execute(sql).unwrap();
    }
    let id: String = db
        .query_one("SELECT request_id::text FROM steadytext_queue WHERE id = 150000", &[])
        .unwrap()
        .get(0);
    let serve = Daemon::serve(&["--database-url", &cluster.url("st_worker"), "--concurrency", "1"]);
    let pages = [
        "/ui".to_owned(),
        "/ui/requests".to_owned(),
        "/ui/requests?before=150000".to_owned(),
        "/ui/requests?status=failed&function=embed".to_owned(),
        "/ui/requests?function=rerank&status=cancelled".to_owned(),
        "/ui/requests?age=300&priority=1".to_owned(),
        format!("/ui/requests/{id}"),
        format!("/ui/requests/{id}/status"),
    ];
    for path in &pages {
        let (code, body) = serve.request("GET", path, &[], "");
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (_, overview) = serve.request("GET", "/ui", &[], "");
    assert!(overview.contains("id=\"sampled\""), "300 000 rows: finished counts are sampled");
    assert!(overview.contains("id=\"derivations-sampled\""), "and the derivation's rows in sync");
    // the failed rows and those under way are exact; the last error is the newest failure's
    let derivation = overview
        .split("<tr data-derivation=")
        .nth(1)
        .and_then(|row| row.split("</tr>").next())
        .expect("the derivation's row");
    let cells: Vec<&str> = derivation
        .split("<td")
        .skip(1)
        .map(|c| c.split('>').nth(1).unwrap_or("").split('<').next().unwrap_or(""))
        .collect();
    assert_eq!(cells[0], "public.big_docs", "{derivation}");
    assert_eq!(cells[6], "600", "pending: exactly the 600 rows under way\n{derivation}");
    assert_eq!(cells[7], "300", "failed: exactly 300\n{derivation}");
    // a 1 % sample of about 5 500 pages reads about 55 of them, give or take 7 (binomial), so
    // the estimate's standard deviation is about 13 %: the bounds are about four of them
    let total: i64 = cells[4].parse().unwrap();
    assert!((150_000..=450_000).contains(&total), "total {total} estimated within 50 %");
    let (_, sparse) =
        serve.request("GET", "/ui/requests?function=rerank&status=cancelled", &[], "");
    assert!(sparse.contains("id=\"scanned\""), "a sparse filter reads a bounded page");
    assert!(sparse.contains("rel=\"next\""), "and links to the rows older than it read");
    // rerank rows are every 200th: a page of 50 spans 10 000 rows, within one page's reading
    let (_, dense) = serve.request("GET", "/ui/requests?function=rerank", &[], "");
    assert_eq!(dense.matches("<tr data-request=").count(), 50, "a full page");
    assert!(!dense.contains("id=\"scanned\""));
    let plans = wait_until(Duration::from_secs(10), "the dashboard's plans in the log", || {
        let entries = log_entries_of(&cluster.log(), "steadytext-dashboard");
        (entries.iter().filter(|e| e.contains("Query Text")).count() >= pages.len())
            .then_some(entries)
    });
    for plan in plans.iter().filter(|e| e.contains("steadytext_derivation_rows")) {
        assert!(
            !plan.contains("Seq Scan on steadytext_derivation_rows"),
            "a full scan of the derivations' bookkeeping:\n{plan}"
        );
    }
    let on_queue: Vec<&String> = plans.iter().filter(|e| e.contains("steadytext_queue")).collect();
    assert!(on_queue.len() >= pages.len(), "{} plans read the queue", on_queue.len());
    for plan in &on_queue {
        assert!(
            !plan.contains("Seq Scan on steadytext_queue"),
            "a full scan of the queue:\n{plan}"
        );
    }
}
