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
