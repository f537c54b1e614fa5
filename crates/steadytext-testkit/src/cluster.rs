//! A throwaway PostgreSQL 15 cluster on a free loopback port, stopped and deleted on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root every server command runs
//! as the `postgres` OS user through `runuser`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Directory of the PostgreSQL binaries (`PG_CONFIG` overrides the Debian default).
pub fn pg_bin_dir() -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG")
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into());
    let out = Command::new(&pg_config).arg("--bindir").output().expect("pg_config runs");
    assert!(out.status.success(), "{pg_config} --bindir failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
}

/// Builds a command for a PostgreSQL binary (or any program that must run as the postgres
/// OS user), as the postgres user when we are root.
pub(crate) fn pg_command(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temporary directory the postgres OS user owns (when we are root).
fn owned_temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("steadytext-pg-").tempdir().unwrap();
    if is_root() {
        let mut c = Command::new("chown");
        c.arg("postgres:").arg(dir.path());
        run(c, "chown");
    }
    dir
}

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running throwaway cluster.
pub struct TestCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

impl TestCluster {
    /// initdb + start; waits (with a deadline) until the server accepts connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like `start`, with extra server settings (`name=value`, passed as `-c name=value`), e.g.
    /// `shared_preload_libraries=pg_steadytext`.
    pub fn start_with(settings: &[&str]) -> Self {
        let dir = owned_temp_dir();
        let bin = pg_bin_dir();
        let mut initdb = pg_command(&bin.join("initdb"));
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "-N",
        ]);
        run(initdb, "initdb");
        Self::launch(dir, bin, settings)
    }

    /// A streaming standby of `primary` (`pg_basebackup -R -c fast`: it follows the primary over a
    /// replication connection), started on its own port; waits until it accepts connections.
    pub fn start_standby_of(primary: &TestCluster) -> Self {
        let dir = owned_temp_dir();
        let bin = pg_bin_dir();
        let mut backup = pg_command(&bin.join("pg_basebackup"));
        backup.args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres"]);
        backup.arg("-D").arg(dir.path().join("data")).args(["-R", "-X", "stream", "-c", "fast"]);
        run(backup, "pg_basebackup");
        Self::launch(dir, bin, &[])
    }

    /// Starts the server of the data directory in `dir` on a free port.
    fn launch(dir: tempfile::TempDir, bin: PathBuf, settings: &[&str]) -> Self {
        let port = free_port();
        let mut ctl = pg_command(&bin.join("pg_ctl"));
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        for setting in settings {
            options.push_str(&format!(" -c {setting}"));
        }
        let data = dir.path().join("data");
        ctl.arg("-D").arg(&data).arg("-l").arg(dir.path().join("log")).arg("-o").arg(options);
        ctl.arg("start");
        run(ctl, "pg_ctl start");
        let cluster = Self { dir, bin, port };
        cluster.wait_ready(Duration::from_secs(30));
        cluster
    }

    /// Promotes a standby to a primary (`pg_ctl promote`, waiting until it accepts writes).
    pub fn promote(&self) {
        let mut ctl = pg_command(&self.bin.join("pg_ctl"));
        ctl.arg("-D").arg(self.dir.path().join("data")).args(["promote", "-w"]);
        run(ctl, "pg_ctl promote");
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_immediately(&self) {
        let mut ctl = pg_command(&self.bin.join("pg_ctl"));
        ctl.arg("-D").arg(self.dir.path().join("data")).args(["stop", "-m", "immediate", "-w"]);
        run(ctl, "pg_ctl stop");
    }

    fn wait_ready(&self, deadline: Duration) {
        let start = Instant::now();
        loop {
            match self.try_connect("postgres") {
                Ok(_) => return,
                Err(e) if start.elapsed() > deadline => {
                    let log =
                        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
                    panic!("cluster not ready after {deadline:?}: {e}\nserver log:\n{log}");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn try_connect(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname={db}", self.port),
            postgres::NoTls,
        )
    }

    /// Restarts the server (fast shutdown: open sessions are disconnected) on the same port.
    pub fn restart(&self) {
        let mut ctl = pg_command(&self.bin.join("pg_ctl"));
        ctl.arg("-D").arg(self.dir.path().join("data")).args(["restart", "-m", "fast", "-w"]);
        ctl.arg("-l").arg(self.dir.path().join("log"));
        run(ctl, "pg_ctl restart");
        self.wait_ready(Duration::from_secs(30));
    }

    /// Restarts the server as after a crash (immediate shutdown: no checkpoint, recovery from
    /// the WAL at start) on the same port.
    pub fn restart_immediately(&self) {
        let mut ctl = pg_command(&self.bin.join("pg_ctl"));
        ctl.arg("-D").arg(self.dir.path().join("data")).args(["restart", "-m", "immediate", "-w"]);
        ctl.arg("-l").arg(self.dir.path().join("log"));
        run(ctl, "pg_ctl restart -m immediate");
        self.wait_ready(Duration::from_secs(60));
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Connection URL of database `postgres` for `user`.
    pub fn url(&self, user: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/postgres", self.port)
    }

    /// Connection URL of database `db` for `user`.
    pub fn url_of(&self, user: &str, db: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// A new connection to database `postgres` as superuser `postgres`.
    pub fn connect(&self) -> postgres::Client {
        self.try_connect("postgres").expect("connect to test cluster")
    }

    /// A new connection to database `db` as superuser `postgres`.
    pub fn connect_to(&self, db: &str) -> postgres::Client {
        self.try_connect(db).unwrap_or_else(|e| panic!("connect to database {db}: {e}"))
    }

    /// Dumps database `from` with `pg_dump` (plain format), creates database `to` and restores
    /// the dump into it with `psql` (stopping at the first error); panics with the tools'
    /// messages on failure.
    pub fn dump_and_restore(&self, from: &str, to: &str) {
        let dump = self.client_program("pg_dump").args(["-d", from]).output().unwrap();
        assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
        self.connect().batch_execute(&format!("CREATE DATABASE {to}")).unwrap();
        let mut psql = self
            .client_program("psql")
            .args(["-d", to, "-q", "-v", "ON_ERROR_STOP=1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            psql.stdin.take().unwrap().write_all(&dump.stdout).unwrap();
        }
        let restore = psql.wait_with_output().unwrap();
        assert!(restore.status.success(), "restore: {}", String::from_utf8_lossy(&restore.stderr));
    }

    /// A command running the PostgreSQL client program `name` (`pg_dump`, `psql`, …) of the
    /// cluster's installation against it as `postgres` (host, port and user given; as the
    /// postgres OS user when we are root).
    pub fn client_program(&self, name: &str) -> Command {
        let mut c = pg_command(&self.bin.join(name));
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"]);
        c
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // a crashed backend is worth seeing whatever the test concluded
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        if log.contains("terminated by signal") || log.contains("PANIC") {
            eprintln!("server log of the test cluster (a process crashed):\n{log}");
            let _ = std::fs::write(format!("/tmp/steadytext-crash-{}.log", self.port), &log);
        }
        let mut ctl = pg_command(&self.bin.join("pg_ctl"));
        ctl.arg("-D").arg(self.dir.path().join("data")).args(["stop", "-m", "immediate", "-w"]);
        let _ = ctl.output();
    }
}
