//! Integration tier: derivations with a real daemon and its worker. A role declares an embedding
//! and a summary on its own table; the rows already there are backfilled, and every later
//! INSERT, UPDATE, DELETE and COPY is followed, until each row's destinations equal the
//! synchronous functions applied to the row's final input, with nothing left over for deleted
//! rows.

mod support;

use std::time::Duration;

use postgres::Client;
use steadytext_testkit::document;
use support::cluster::TestCluster;
use support::daemon::{wait_until, Daemon};

/// How long the derivations may take to catch up with a batch of changes.
const DEADLINE: Duration = Duration::from_secs(180);

/// Points `steadytext.daemon_url` at `url` for every session (`ALTER SYSTEM`, reload) and waits
/// until a new session sees it: the postmaster applies a reload asynchronously.
fn use_daemon(cluster: &TestCluster, admin: &mut Client, url: &str) {
    // the library's settings are known once it is loaded in this session
    admin.batch_execute("SELECT steadytext_version()").unwrap();
    admin.batch_execute(&format!("ALTER SYSTEM SET steadytext.daemon_url = '{url}'")).unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_until(DEADLINE, "the reloaded steadytext.daemon_url", || {
        let mut db = cluster.connect();
        let seen: String = db
            .query_one(
                "SELECT steadytext_version() || ' ' || current_setting('steadytext.daemon_url')",
                &[],
            )
            .ok()?
            .get(0);
        seen.ends_with(url).then_some(())
    });
}

/// Waits until every derivation of `docs` has all rows in sync and nothing pending or failed.
fn wait_in_sync(db: &mut Client, rows: i64) {
    wait_until(DEADLINE, "every derivation in sync", || {
        let status = db
            .query(
                "SELECT destination::text, rows_total, rows_in_sync, rows_pending, rows_failed, \
                        coalesce(last_error, '') \
                 FROM steadytext_derivation_status ORDER BY id",
                &[],
            )
            .unwrap();
        for row in &status {
            let failed: i64 = row.get(4);
            assert_eq!(
                failed,
                0,
                "{} failed: {}",
                row.get::<_, String>(0),
                row.get::<_, String>(5)
            );
        }
        let done = status.len() == 2
            && status.iter().all(|r| r.get::<_, i64>(1) == rows && r.get::<_, i64>(2) == rows);
        done.then_some(())
    });
}

/// Asserts that every row's embedding and summary equal the synchronous functions on its
/// current input; returns how many rows there are.
fn assert_rows_match_sync(db: &mut Client) -> i64 {
    let rows = db
        .query(
            "SELECT id, embedding = steadytext_embed(title || ': ' || body) AS embedding_ok, \
                    summary = steadytext_generate('Summarise: ' || body, 8) AS summary_ok, \
                    embedding IS NULL AS no_embedding \
             FROM docs ORDER BY id",
            &[],
        )
        .unwrap();
    for row in &rows {
        let id: i64 = row.get(0);
        assert!(!row.get::<_, bool>(3), "row {id} has no embedding");
        assert_eq!(row.get::<_, Option<bool>>(1), Some(true), "row {id}'s embedding");
        assert_eq!(row.get::<_, Option<bool>>(2), Some(true), "row {id}'s summary");
    }
    rows.len() as i64
}

#[test]
fn derived_columns_follow_their_rows_through_a_real_worker() {
    let cluster = TestCluster::start();
    let mut admin = support::extension_with_worker_role(&cluster);
    admin
        .batch_execute(
            "CREATE ROLE author LOGIN;
             CREATE TABLE docs (id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL,
                                embedding real[], summary text, views int NOT NULL DEFAULT 0);
             ALTER TABLE docs OWNER TO author;
             INSERT INTO docs (id, title, body)
             SELECT i, 'Title ' || i, 'Body of document number ' || i || '.'
             FROM generate_series(1, 24) AS i;",
        )
        .unwrap();
    let serve =
        Daemon::serve(&["--database-url", &cluster.url("st_worker"), "--worker-id", "derivations"]);
    use_daemon(&cluster, &mut admin, &serve.url);
    let mut author = postgres::Client::connect(&cluster.url("author"), postgres::NoTls).unwrap();
    author
        .batch_execute(
            "SELECT steadytext_derive('docs', 'embedding', $$title || ': ' || body$$);
             SELECT steadytext_derive('docs', 'summary', $$'Summarise: ' || body$$, 'generate',
                                      '{\"max_tokens\": 8}');",
        )
        .unwrap();
    // the 24 rows already there are backfilled by the worker's walk
    wait_in_sync(&mut author, 24);
    assert_eq!(assert_rows_match_sync(&mut author), 24);
    // backfill requests ran below interactive priority, as the declarer's
    let backfilled: Vec<(i32, String)> = admin
        .query("SELECT DISTINCT priority, owner::text FROM steadytext_queue", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(backfilled, vec![(-100, "author".to_owned())]);

    // an UPDATE of a column the inputs do not read costs no request
    let requests = |db: &mut Client| -> i64 {
        db.query_one("SELECT count(*) FROM steadytext_queue", &[]).unwrap().get(0)
    };
    let before = requests(&mut admin);
    author.batch_execute("UPDATE docs SET views = views + 1").unwrap();
    assert_eq!(requests(&mut admin), before, "an UPDATE of views enqueued requests");

    // edits, deletes, inserts and a COPY, in a few statements each
    author
        .batch_execute(
            "UPDATE docs SET body = 'An edited body, version 2, of ' || id || '.' WHERE id % 5 = 0;
             UPDATE docs SET title = 'Retitled ' || id WHERE id IN (3, 4);
             DELETE FROM docs WHERE id IN (7, 8, 9);
             INSERT INTO docs (id, title, body)
             SELECT i, 'New ' || i, 'A body inserted later, number ' || i || '.'
             FROM generate_series(25, 30) AS i;",
        )
        .unwrap();
    {
        let mut copy = author.copy_in("COPY docs (id, title, body) FROM STDIN").unwrap();
        use std::io::Write;
        copy.write_all(b"31\tCopied\tA body that arrived by COPY.\n32\tCopied too\tAnother one.\n")
            .unwrap();
        copy.finish().unwrap();
    }
    // an edit made while the previous one is still queued supersedes it
    author.batch_execute("UPDATE docs SET body = 'Edited twice.' WHERE id = 10").unwrap();
    wait_in_sync(&mut author, 29);
    assert_eq!(assert_rows_match_sync(&mut author), 29);
    let leftover: i64 = admin
        .query_one(
            "SELECT count(*) FROM steadytext_derivation_rows \
             WHERE (source_key ->> 'id')::bigint IN (7, 8, 9)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftover, 0, "deleted rows left bookkeeping behind");
    // nothing runs for a derivation any more; queue rows say whom they served
    let open: i64 = admin
        .query_one(
            "SELECT count(*) FROM steadytext_queue WHERE status IN ('pending', 'processing')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(open, 0);
    let untagged: i64 = admin
        .query_one("SELECT count(*) FROM steadytext_queue WHERE derivation_id IS NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(untagged, 0);
}

#[test]
fn derivations_survive_pg_dump_and_restore() {
    let cluster = TestCluster::start();
    let mut admin = support::extension_with_worker_role(&cluster);
    // five rows walked into the queue (no worker yet), one completed by hand before the dump
    admin
        .batch_execute(
            "CREATE ROLE dump_author LOGIN;
             CREATE TABLE docs (id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL,
                                embedding real[], summary text);
             ALTER TABLE docs OWNER TO dump_author;
             INSERT INTO docs (id, title, body)
             SELECT i, 'Dumped ' || i, 'A document that went through pg_dump, number ' || i
             FROM generate_series(1, 5) AS i;
             SET ROLE dump_author;
             SELECT steadytext_derive('docs', 'embedding', $$title || ': ' || body$$);
             SELECT steadytext_derive('docs', 'summary', $$'Summarise: ' || body$$, 'generate',
                                      '{\"max_tokens\": 8}');
             RESET ROLE;
             SELECT steadytext_derivation_walk() FROM generate_series(1, 3);",
        )
        .unwrap();
    let pending: i64 =
        admin.query_one("SELECT count(*) FROM steadytext_queue", &[]).unwrap().get(0);
    assert_eq!(pending, 10);

    cluster.dump_and_restore("postgres", "restored");

    let mut restored = cluster.connect_to("restored");
    let derivations: Vec<(String, String, i64)> = restored
        .query(
            "SELECT d.destination::text, d.declarer::text, \
                    (SELECT count(*) FROM steadytext_derivation_rows r WHERE r.derivation_id = d.id) \
             FROM steadytext_derivations d ORDER BY d.id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        derivations,
        vec![
            ("embedding".to_owned(), "dump_author".to_owned(), 5),
            ("summary".to_owned(), "dump_author".to_owned(), 5)
        ]
    );
    // a daemon on the restored database derives the restored requests, and the restored
    // triggers follow new changes
    let serve = Daemon::serve(&[
        "--database-url",
        &cluster.url_of("st_worker", "restored"),
        "--worker-id",
        "after-restore",
    ]);
    restored
        .batch_execute(&format!(
            "ALTER DATABASE restored SET steadytext.daemon_url = '{}'",
            serve.url
        ))
        .unwrap();
    let mut author =
        postgres::Client::connect(&cluster.url_of("dump_author", "restored"), postgres::NoTls)
            .unwrap();
    author
        .batch_execute(
            "INSERT INTO docs (id, title, body) VALUES (6, 'After', 'Inserted after the restore');
             UPDATE docs SET body = 'Edited after the restore' WHERE id = 1;",
        )
        .unwrap();
    wait_in_sync(&mut author, 6);
    assert_eq!(assert_rows_match_sync(&mut author), 6);
}

#[test]
fn a_chunked_embedding_follows_its_document_one_paragraph_at_a_time() {
    use steadytext_api::metric_names::EMBEDDED_TEXTS;
    let cluster = TestCluster::start();
    let mut admin = support::extension_with_worker_role(&cluster);
    let serve =
        Daemon::serve(&["--database-url", &cluster.url("st_worker"), "--worker-id", "chunks"]);
    use_daemon(&cluster, &mut admin, &serve.url);
    let long = document::paragraphs(20, None);
    admin.execute("CREATE TABLE manuals (id bigint PRIMARY KEY, body text NOT NULL)", &[]).unwrap();
    admin.execute("INSERT INTO manuals VALUES (1, $1), (2, 'A short one.')", &[&long]).unwrap();
    admin
        .batch_execute(
            "SELECT steadytext_derive('manuals', 'manual_chunks', 'body', 'embed_chunks',
                                      '{\"chunk_tokens\": 64, \"chunk_overlap\": 8}');",
        )
        .unwrap();
    let wait = |db: &mut Client| {
        db.batch_execute("SELECT steadytext_derivation_wait('manuals', 'manual_chunks', 180)")
            .unwrap();
    };
    wait(&mut admin);
    // every chunk is a piece of its document, within the chunk size, embedded as
    // steadytext_embed embeds it; together they hold every word of the document
    let chunks: Vec<(i64, i32, String, bool, i32)> = admin
        .query(
            "SELECT id, chunk, chunk_text, embedding = steadytext_embed(chunk_text), \
                    cardinality(embedding) \
             FROM manual_chunks ORDER BY id, chunk",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let of = |id: i64| chunks.iter().filter(|c| c.0 == id).collect::<Vec<_>>();
    assert_eq!(of(2).len(), 1);
    assert_eq!(of(2)[0].2, "A short one.");
    let first = of(1);
    assert!(first.len() >= 20, "{} chunks for 20 paragraphs", first.len());
    for (_, n, text, same, dims) in &first {
        assert!(long.contains(text.as_str()), "chunk {n} is not a piece of the document");
        assert!(*same, "chunk {n}'s embedding differs from steadytext_embed");
        assert_eq!(*dims, 384);
    }
    let words: Vec<&str> = long.split_whitespace().collect();
    let covered: std::collections::HashSet<&str> =
        first.iter().flat_map(|c| c.2.split_whitespace()).collect();
    assert!(words.iter().all(|w| covered.contains(w)), "a word of the document is in no chunk");
    let numbers: Vec<i32> = first.iter().map(|c| c.1).collect();
    assert_eq!(numbers, (1..=first.len() as i32).collect::<Vec<_>>());

    // one paragraph edited: only that paragraph's chunks reach the engine, the rest are hits
    let before = serve.counter(EMBEDDED_TEXTS).unwrap();
    admin
        .execute("UPDATE manuals SET body = $1 WHERE id = 1", &[&document::paragraphs(20, Some(7))])
        .unwrap();
    wait(&mut admin);
    let computed = serve.counter(EMBEDDED_TEXTS).unwrap() - before;
    assert_eq!(
        computed, 1.0,
        "chunks embedded for one edited paragraph (one chunk per paragraph here)"
    );
    let edited: i64 = admin
        .query_one(
            "SELECT count(*) FROM manual_chunks WHERE id = 1 AND chunk_text LIKE '%lighthouses%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(edited, 1);
    // a deleted document takes its chunks with it
    admin.execute("DELETE FROM manuals WHERE id = 1", &[]).unwrap();
    let left: i64 =
        admin.query_one("SELECT count(*) FROM manual_chunks WHERE id = 1", &[]).unwrap().get(0);
    assert_eq!(left, 0);
}

/// Runs `sql` until it succeeds (the server may be restarting), with a deadline.
fn retrying(cluster: &TestCluster, sql: &str) {
    wait_until(DEADLINE, sql, || {
        let mut db = postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).ok()?;
        db.batch_execute(sql).ok()
    });
}

#[test]
fn chaos_a_killed_worker_and_a_crashed_server_during_a_backfill_leave_nothing_stale() {
    const ROWS: i64 = 10_000;
    let cluster = TestCluster::start();
    let mut admin = support::extension_with_worker_role(&cluster);
    admin
        .batch_execute(&format!(
            "CREATE TABLE docs (id bigint PRIMARY KEY, body text NOT NULL, embedding real[]);
             INSERT INTO docs (id, body)
             SELECT i, 'Chaos document number ' || i || ' about ' || (i % 97) || ' things.'
             FROM generate_series(1, {ROWS}) AS i;
             SELECT steadytext_derive('docs', 'embedding', 'body', 'embed', '{{\"backfill_priority\": 0}}');
             SELECT steadytext_derive('docs', 'doc_chunks', 'body', 'embed_chunks');"
        ))
        .unwrap();
    let mut first = Daemon::worker(&[
        "--database-url",
        &cluster.url("st_worker"),
        "--worker-id",
        "chaos-a",
        "--lease",
        "3",
    ]);
    let written = |db: &mut Client| -> i64 {
        db.query_one("SELECT count(*) FROM docs WHERE embedding IS NOT NULL", &[]).unwrap().get(0)
    };
    wait_until(DEADLINE, "the backfill to be under way", || {
        (written(&mut admin) >= 300).then_some(())
    });
    // users change and delete rows while the backfill runs
    admin
        .batch_execute(
            "UPDATE docs SET body = body || ' Edited once.' WHERE id % 10 = 0;
             DELETE FROM docs WHERE id % 13 = 0;
             UPDATE docs SET body = body || ' Edited twice.' WHERE id % 20 = 0;",
        )
        .unwrap();
    // the worker dies mid-flight, then the server crashes
    first.kill9();
    cluster.restart_immediately();
    retrying(&cluster, "UPDATE docs SET body = body || ' After the crash.' WHERE id % 7 = 0");
    retrying(&cluster, "DELETE FROM docs WHERE id % 11 = 0");
    let serve = Daemon::serve(&[
        "--database-url",
        &cluster.url("st_worker"),
        "--worker-id",
        "chaos-b",
        "--lease",
        "3",
    ]);
    let mut admin = cluster.connect();
    use_daemon(&cluster, &mut admin, &serve.url);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "SELECT steadytext_derivation_wait('docs', 'embedding', 600);
             SELECT steadytext_derivation_wait('docs', 'doc_chunks', 600);",
        )
        .unwrap();
    // every row's destinations equal the synchronous function on its final input
    let check = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE embedding IS NULL),
                    count(*) FILTER (WHERE embedding IS DISTINCT FROM steadytext_embed(body)),
                    count(*)
             FROM docs",
            &[],
        )
        .unwrap();
    let (missing, stale, rows): (i64, i64, i64) = (check.get(0), check.get(1), check.get(2));
    assert!(rows < ROWS && rows > ROWS / 2, "{rows} rows left");
    assert_eq!((missing, stale), (0, 0), "rows missing or stale embeddings");
    let chunks = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT FROM docs d WHERE d.id = c.id)),
                    -- a body is one short paragraph: its one chunk is the body, and so is its
                    -- embedding the row's, which was just checked against steadytext_embed
                    count(*) FILTER (WHERE NOT EXISTS (
                        SELECT FROM docs d WHERE d.id = c.id AND d.body = c.chunk_text
                                             AND d.embedding = c.embedding)),
                    count(DISTINCT c.id)
             FROM doc_chunks c",
            &[],
        )
        .unwrap();
    let (orphans, stale_chunks, rows_chunked): (i64, i64, i64) =
        (chunks.get(0), chunks.get(1), chunks.get(2));
    assert_eq!((orphans, stale_chunks, rows_chunked), (0, 0, rows));
    // and the queue holds nothing open
    let open: i64 = admin
        .query_one(
            "SELECT count(*) FROM steadytext_queue WHERE status IN ('pending', 'processing')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(open, 0);
}
