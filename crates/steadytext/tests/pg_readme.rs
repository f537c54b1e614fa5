//! Integration tier: the SQL of README.md runs verbatim against a throwaway cluster with the
//! daemon (HTTP API + queue worker), and every ```sql block followed by a ```text block prints
//! exactly that text (psql's aligned format). The configuration tables are generated from their
//! declarations (`support::generated_tables`) and must match the README's marked regions;
//! `STEADYTEXT_UPDATE_README=1` rewrites those regions instead. Keeps the README true.
//!
//! The examples under a `## ` heading that names pgvector need pgvector installed: without it
//! they are skipped with a message (and the rest still runs), except in CI, where that fails.

mod support;

use std::process::{Command, Stdio};

use support::cluster::TestCluster;
use support::daemon::Daemon;
use support::generated_tables;

/// One ```sql block and the ```text block right after it, if any.
#[derive(Debug)]
struct Example {
    line: usize,
    sql: String,
    expected: Option<String>,
    /// Under a `## ` heading that names pgvector.
    needs_pgvector: bool,
}

fn examples(readme: &str) -> Vec<Example> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut needs_pgvector = false;
    let mut i = 0;
    let block = |start: usize| -> (String, usize) {
        let mut body = String::new();
        let mut j = start + 1;
        while !lines[j].starts_with("```") {
            body.push_str(lines[j]);
            body.push('\n');
            j += 1;
        }
        (body, j + 1)
    };
    while i < lines.len() {
        if lines[i].trim_end() == "```sql" {
            let (sql, next) = block(i);
            let mut k = next;
            while k < lines.len() && lines[k].trim().is_empty() {
                k += 1;
            }
            let (expected, after) = if k < lines.len() && lines[k].trim_end() == "```text" {
                let (text, after) = block(k);
                (Some(text), after)
            } else {
                (None, next)
            };
            out.push(Example { line: i + 1, sql, expected, needs_pgvector });
            i = after;
        } else {
            if let Some(heading) = lines[i].strip_prefix("## ") {
                needs_pgvector = heading.contains("pgvector");
            }
            i += 1;
        }
    }
    out
}

fn psql(cluster: &TestCluster, sql: &str) -> (bool, String) {
    let psql = support::cluster::pg_bin_dir().join("psql");
    let mut child = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &cluster.port.to_string(), "-d", "postgres", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn normalise(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim().to_owned()
}

#[test]
fn the_readme_sql_runs_and_prints_what_it_shows() {
    let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let mut readme = std::fs::read_to_string(readme_path).unwrap();
    let examples = examples(&readme);
    assert!(examples.len() >= 10, "README has {} sql examples", examples.len());
    let cluster = TestCluster::start();
    let mut db = cluster.connect();
    // the worker needs the queue functions from its first claim on
    db.batch_execute("CREATE EXTENSION pg_steadytext").unwrap();
    let daemon = Daemon::serve(&["--database-url", &cluster.url("postgres"), "--concurrency", "4"]);
    db.batch_execute(&format!("ALTER SYSTEM SET steadytext.daemon_url = '{}'", daemon.url))
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    let mut failures = Vec::new();
    // the tables between the README's `generated` markers are rendered from the declarations
    let before = readme.clone();
    let tables = [
        ("gucs", generated_tables::guc_table(&mut db)),
        ("flags", generated_tables::flags_table()),
    ];
    for (name, table) in &tables {
        if let Err(e) = generated_tables::sync_region(&mut readme, name, table) {
            failures.push(e);
        }
    }
    if readme != before {
        std::fs::write(readme_path, &readme).unwrap();
        eprintln!("README.md: rewrote its generated tables; review and commit the change");
    }
    // the configuration section lists every declared setting, flag and environment variable
    let settings: Vec<String> = db
        .query("SELECT name FROM pg_settings WHERE name LIKE 'steadytext.%' ORDER BY name", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(settings.len() >= 8, "{settings:?}");
    for name in settings {
        if !readme.contains(&format!("`{name}`")) {
            failures.push(format!("README.md does not document the setting {name}"));
        }
    }
    for command in ["serve", "worker"] {
        let help = support::cli::steadytext(None, &[command, "--help"], &[]);
        let help = String::from_utf8(help.stdout).unwrap();
        let words = help.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '=');
        // `--db-*` in prose is a family of flags, not one
        let words = words.filter(|w| !w.contains('*'));
        for word in words.map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric())) {
            let missing = if word.starts_with("--") && word.len() > 2 {
                word != "--help" && !readme.contains(&format!("`{word}`"))
            } else {
                word.starts_with("STEADYTEXT_") && !readme.contains(&format!("`{word}`"))
            };
            if missing {
                failures
                    .push(format!("README.md does not document {word} of steadytext {command}"));
            }
        }
    }
    let pgvector: bool = db
        .query_one("SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'vector'", &[])
        .unwrap()
        .get(0);
    let in_ci = std::env::var("CI").is_ok_and(|v| ["true", "1"].contains(&&*v.to_lowercase()));
    let pgvector_examples = examples.iter().filter(|ex| ex.needs_pgvector).count();
    assert!(pgvector_examples >= 3, "README has {pgvector_examples} pgvector examples");
    if !pgvector {
        let message = format!(
            "pgvector is not installed: the README's {pgvector_examples} pgvector examples cannot \
             run (scripts/setup installs it)"
        );
        if in_ci {
            failures.push(message);
        } else {
            eprintln!("SKIPPED: {message}");
        }
    }
    for ex in examples.iter().filter(|ex| pgvector || !ex.needs_pgvector) {
        let (ok, output) = psql(&cluster, &ex.sql);
        if !ok {
            failures.push(format!("README.md:{}: failed:\n{}\n{output}", ex.line, ex.sql));
            continue;
        }
        if let Some(expected) = &ex.expected {
            if normalise(&output) != normalise(expected) {
                failures.push(format!(
                    "README.md:{}: output differs\n--- sql\n{}--- README shows\n{}--- psql printed\n{}",
                    ex.line, ex.sql, expected, output
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
