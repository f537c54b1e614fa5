//! A throwaway PgBouncer (Debian's `pgbouncer` package, `/usr/sbin/pgbouncer`) in front of a
//! [`TestCluster`], on a free loopback port, stopped on drop. Two pools of the cluster's
//! `postgres` database: `postgres` in transaction pooling, `postgres_session` in session
//! pooling. As root it runs as the `postgres` OS user, like the cluster.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{free_port, is_root, pg_command, TestCluster};

/// Where Debian installs the PgBouncer binary.
pub const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A running PgBouncer.
pub struct PgBouncer {
    child: Child,
    dir: tempfile::TempDir,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer in front of `cluster` with at most `pool_size` server connections per
    /// pool (so that more clients than that share them), and waits until it accepts
    /// connections. Panics when PgBouncer is not installed (`scripts/setup` installs it).
    pub fn start(cluster: &TestCluster, pool_size: u32) -> Self {
        assert!(
            std::path::Path::new(PGBOUNCER).exists(),
            "{PGBOUNCER} is missing: run scripts/setup (Debian package pgbouncer)"
        );
        let dir = tempfile::Builder::new().prefix("steadytext-pgbouncer-").tempdir().unwrap();
        let port = free_port();
        let server = format!("host=127.0.0.1 port={} dbname=postgres", cluster.port);
        let ini = format!(
            "[databases]\n\
             postgres = {server} pool_mode=transaction\n\
             postgres_session = {server} pool_mode=session\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 100\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).unwrap();
        std::fs::write(
            dir.path().join("users.txt"),
            "\"postgres\" \"\"\n\"st_worker\" \"\"\n\"bouncer_client\" \"\"\n",
        )
        .unwrap();
        if is_root() {
            let _ = Command::new("chown").arg("-R").arg("postgres:").arg(dir.path()).status();
        }
        let mut cmd = pg_command(std::path::Path::new(PGBOUNCER));
        cmd.arg(dir.path().join("pgbouncer.ini"));
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().expect("pgbouncer starts");
        let bouncer = Self { child, dir, port };
        bouncer.wait_ready(Duration::from_secs(30));
        bouncer
    }

    /// Connection URL of pool `db` (`postgres`: transaction pooling, `postgres_session`:
    /// session pooling) for `user`.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// A new client connection to pool `db` as `user`.
    pub fn connect(&self, user: &str, db: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(
            &format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port),
            postgres::NoTls,
        )
    }

    /// PgBouncer's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    fn wait_ready(&self, deadline: Duration) {
        let start = Instant::now();
        loop {
            match self.connect("postgres", "postgres") {
                Ok(_) => return,
                Err(e) if start.elapsed() > deadline => {
                    panic!("pgbouncer not ready after {deadline:?}: {e}\nlog:\n{}", self.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // runuser forwards the signal to pgbouncer
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid =
            std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}
