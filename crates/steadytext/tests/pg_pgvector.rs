//! Integration tier: embeddings stored in pgvector (`CREATE EXTENSION vector`), as users store
//! them. Synchronous and asynchronous (text result cast with `::vector`, and the typed `real[]`
//! accessor) embeddings go into a `vector(384)` column, an HNSW index is built over them and a
//! nearest-neighbour query uses it; pgvector's cosine distance agrees with the embeddings' own
//! geometry and with `steadytext_rerank`'s scores. The statements are README.md's "Semantic
//! search with pgvector" (whose output pg_readme.rs checks); this test adds the checks.
//!
//! Needs pgvector installed into the PostgreSQL under test (`scripts/setup` does it); without
//! it this test fails with that message (`scripts/test integration` leaves it out and says so,
//! except in CI).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use postgres::Client;
use support::cluster::TestCluster;
use support::daemon::Daemon;

/// The documents' bodies, by id.
const DOCUMENTS: [&str; 6] = [
    "Mix flour, water, yeast and salt, then bake the dough in a hot oven.",
    "The stock market closed lower after a volatile day of trading.",
    "Penguins are flightless birds that live in the Southern Hemisphere.",
    "Change the engine oil of your car every ten thousand kilometres.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
    "Water boils at 100 degrees Celsius at sea level.",
];

/// README.md's statements that store the documents, each run on its own (autocommit, as psql
/// runs them): 1–3 embedded synchronously, 4–6 through the queue, 4 and 5 read as text and cast
/// with `::vector`, 6 through the typed accessor.
const STORE_DOCUMENTS: [&str; 5] = [
    "CREATE TABLE documents (id int PRIMARY KEY, body text NOT NULL, embedding vector(384))",
    "INSERT INTO documents (id, body, embedding)
     SELECT id, body, steadytext_embed(body)
     FROM (VALUES (1, 'Mix flour, water, yeast and salt, then bake the dough in a hot oven.'),
                  (2, 'The stock market closed lower after a volatile day of trading.'),
                  (3, 'Penguins are flightless birds that live in the Southern Hemisphere.')) AS d(id, body)",
    "CREATE TABLE embedding_requests AS
     SELECT id, body, steadytext_embed_async(body) AS request_id
     FROM (VALUES (4, 'Change the engine oil of your car every ten thousand kilometres.'),
                  (5, 'The Eiffel Tower is a wrought-iron lattice tower in Paris.'),
                  (6, 'Water boils at 100 degrees Celsius at sea level.')) AS d(id, body)",
    "INSERT INTO documents (id, body, embedding)
     SELECT id, body, steadytext_get_async_result(request_id, 60)::vector
     FROM embedding_requests WHERE id IN (4, 5)",
    "INSERT INTO documents (id, body, embedding)
     SELECT id, body, steadytext_get_async_embedding(request_id, 60)
     FROM embedding_requests WHERE id = 6",
];

/// README.md's nearest-neighbour query, with the query text as `$1`.
const NEAREST: &str = "SELECT body FROM documents
     ORDER BY embedding <=> (SELECT steadytext_embed($1)::vector)
     LIMIT 1";

/// `vector.control` of the PostgreSQL under test (`PG_CONFIG` overrides the Debian default).
fn vector_control() -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG")
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into());
    let out = Command::new(&pg_config).arg("--sharedir").output().expect("pg_config runs");
    assert!(out.status.success(), "{pg_config} --sharedir failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("extension/vector.control")
}

/// A cluster with pg_steadytext and pgvector, and `steadytext serve` (HTTP API for the
/// synchronous functions + queue worker for the asynchronous ones) pointed at it.
fn setup() -> (TestCluster, Daemon, Client) {
    let control = vector_control();
    assert!(
        control.exists(),
        "pgvector is not installed ({} is missing): run scripts/setup, which installs it",
        control.display()
    );
    let cluster = TestCluster::start();
    let mut db = cluster.connect();
    db.batch_execute("CREATE EXTENSION pg_steadytext; CREATE EXTENSION vector;").unwrap();
    let daemon = Daemon::serve(&["--database-url", &cluster.url("postgres"), "--concurrency", "2"]);
    db.batch_execute(&format!("SET steadytext.daemon_url = '{}'", daemon.url)).unwrap();
    (cluster, daemon, db)
}

/// Runs README.md's statements that fill `documents`; checks every row has 384 dimensions.
fn store_documents(db: &mut Client) {
    for statement in STORE_DOCUMENTS {
        db.batch_execute(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let bodies: Vec<(i32, String, i32)> = db
        .query("SELECT id, body, vector_dims(embedding) FROM documents ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected: Vec<(i32, String, i32)> =
        DOCUMENTS.iter().enumerate().map(|(i, b)| (i as i32 + 1, b.to_string(), 384)).collect();
    assert_eq!(bodies, expected);
}

#[test]
fn embeddings_in_a_vector_column_answer_nearest_neighbour_queries_through_hnsw() {
    let (_cluster, _daemon, mut db) = setup();
    store_documents(&mut db);

    // an asynchronous embedding is the synchronous one, bit for bit, through either accessor;
    // every embedding has unit length
    let rows = db
        .query(
            "SELECT d.id, d.embedding = steadytext_embed(d.body)::vector AS same,
                    vector_norm(d.embedding) AS norm
             FROM documents d ORDER BY d.id",
            &[],
        )
        .unwrap();
    for r in &rows {
        let (id, same, norm): (i32, bool, f64) = (r.get(0), r.get(1), r.get(2));
        assert!(same, "document {id}: the stored embedding differs from steadytext_embed's");
        assert!((norm - 1.0).abs() < 1e-5, "document {id}: norm {norm}");
    }

    db.batch_execute(
        "CREATE INDEX documents_embedding_idx ON documents USING hnsw (embedding vector_cosine_ops)",
    )
    .unwrap();
    db.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: Vec<String> = db
        .query(&format!("EXPLAIN (COSTS OFF) {NEAREST}"), &[&"How do I bake bread at home?"])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter().any(|line| line.contains("Index Scan using documents_embedding_idx")),
        "the nearest-neighbour query does not use the HNSW index:\n{}",
        plan.join("\n")
    );
    for (query, expected) in [
        ("How do I bake bread at home?", DOCUMENTS[0]),
        ("Which birds cannot fly?", DOCUMENTS[2]),
        ("What is the famous landmark of Paris?", DOCUMENTS[4]),
        ("At what temperature does water boil?", DOCUMENTS[5]),
    ] {
        let body: String = db.query_one(NEAREST, &[&query]).unwrap().get(0);
        assert_eq!(body, expected, "nearest document to {query:?}");
    }

    // the index returns what an exact scan returns, in the same order
    let ranking = |db: &mut Client| -> Vec<i32> {
        db.query(
            "SELECT id FROM documents
             ORDER BY embedding <=> (SELECT steadytext_embed('bread and ovens')::vector)
             LIMIT 6",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let through_index = ranking(&mut db);
    db.batch_execute("SET enable_seqscan = on; SET enable_indexscan = off").unwrap();
    assert_eq!(through_index, ranking(&mut db));
    assert_eq!(through_index.len(), DOCUMENTS.len());
}

#[test]
fn rerank_scores_are_pgvector_cosine_similarities() {
    let (_cluster, _daemon, mut db) = setup();
    store_documents(&mut db);
    let query = "How do I bake bread at home?";
    // with no reranker model installed, steadytext_rerank scores by embedding cosine
    let rows = db
        .query(
            "SELECT r.document, r.score, 1 - (d.embedding <=> steadytext_embed($1)::vector) AS cosine
             FROM steadytext_rerank($1, (SELECT array_agg(body ORDER BY id) FROM documents))
                  WITH ORDINALITY AS r(document, score, n)
             JOIN documents d ON d.body = r.document
             ORDER BY r.n",
            &[&query],
        )
        .unwrap();
    assert_eq!(rows.len(), DOCUMENTS.len());
    let mut previous = f64::INFINITY;
    for r in &rows {
        let (document, score, cosine): (String, f64, f64) = (r.get(0), r.get(1), r.get(2));
        assert!(
            (score - cosine).abs() < 1e-5,
            "{document:?}: rerank score {score}, pgvector cosine similarity {cosine}"
        );
        assert!(score <= previous, "rerank rows are not ordered by score");
        previous = score;
    }
    let best: String = rows[0].get(0);
    assert_eq!(best, DOCUMENTS[0]);
}

#[test]
fn a_derivation_keeps_a_vector_column_in_sync_and_its_dimension_is_checked() {
    let (cluster, daemon, mut db) = setup();
    db.batch_execute(&format!("ALTER SYSTEM SET steadytext.daemon_url = '{}'", daemon.url))
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    // the postmaster applies a reload asynchronously: wait until a new session sees it
    let mut db = support::daemon::wait_until(Duration::from_secs(30), "the reload", || {
        let mut db = cluster.connect();
        let url: String = db
            .query_one(
                "SELECT steadytext_version() || ' ' || current_setting('steadytext.daemon_url')",
                &[],
            )
            .ok()?
            .get(0);
        url.ends_with(&daemon.url).then_some(db)
    });
    db.batch_execute(
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL, embedding vector(384),
                             wrong vector(3));
         INSERT INTO notes VALUES (1, 'Penguins are flightless birds.', NULL, NULL),
                                  (2, 'Bread is baked in an oven.', NULL, NULL);",
    )
    .unwrap();
    let refused =
        db.batch_execute("SELECT steadytext_derive('notes', 'wrong', 'body')").unwrap_err();
    let refused = refused.as_db_error().expect("a database error");
    assert_eq!(refused.code().code(), "42804");
    assert_eq!(
        refused.message(),
        "destination \"wrong\" is vector(3), and the embedding model gives 384 dimensions"
    );
    db.batch_execute("SELECT steadytext_derive('notes', 'embedding', 'body')").unwrap();
    db.batch_execute("SELECT steadytext_derivation_wait('notes', 'embedding', 120)").unwrap();
    db.batch_execute("UPDATE notes SET body = 'Penguins swim well.' WHERE id = 1").unwrap();
    db.batch_execute("SELECT steadytext_derivation_wait('notes', 'embedding', 120)").unwrap();
    let same: Vec<bool> = db
        .query("SELECT embedding = steadytext_embed(body)::vector FROM notes ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(same, vec![true, true]);
}
