//! Test support shared by the integration tests.

#![allow(dead_code, unused_imports)] // each test target uses a different part

pub use steadytext_testkit::cluster;
pub mod browser;
pub mod cli;
pub mod daemon;
pub mod generated_tables;

/// Creates the extension and a login role `st_worker` that is a member of steadytext_worker;
/// returns a superuser session.
pub fn extension_with_worker_role(cluster: &cluster::TestCluster) -> postgres::Client {
    let mut db = cluster.connect();
    db.batch_execute(
        "CREATE EXTENSION pg_steadytext;
         CREATE ROLE st_worker LOGIN IN ROLE steadytext_worker;",
    )
    .unwrap();
    db
}

/// Status → count over the whole queue.
pub fn queue_statuses(db: &mut postgres::Client) -> std::collections::HashMap<String, i64> {
    db.query("SELECT status, count(*) FROM steadytext_queue GROUP BY status", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}
