//! The worker's PostgreSQL connection settings: flags or URL, with the password looked up as
//! libpq does (URL, then PGPASSWORD, then the password file).

use std::path::PathBuf;

use tokio_postgres::config::Host;
use tokio_postgres::Config;

use crate::cli::DbArgs;
use crate::error::DaemonError;

/// Whether the flags name a database at all (`serve` runs a worker only then).
pub fn configured(db: &DbArgs) -> bool {
    db.database_url.is_some() || db.db_name.is_some()
}

/// The connection configuration described by the flags.
pub fn config(db: &DbArgs) -> Result<Config, DaemonError> {
    let mut config = match &db.database_url {
        Some(url) => url.parse::<Config>().map_err(DaemonError::Db)?,
        None => {
            let mut c = Config::new();
            c.host(&db.db_host).port(db.db_port).user(&db.db_user);
            if let Some(name) = &db.db_name {
                c.dbname(name);
            }
            c
        }
    };
    config.application_name("steadytext-worker");
    if config.get_password().is_none() {
        if let Some(pw) = password_for(&config) {
            config.password(pw);
        }
    }
    Ok(config)
}

/// PGPASSWORD, else the first matching line of the password file.
fn password_for(config: &Config) -> Option<String> {
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        return Some(pw);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(_)) | None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let db = config.get_dbname().unwrap_or_default().to_owned();
    let user = config.get_user().unwrap_or_default().to_owned();
    pgpass_lookup(&text, [&host, &port, &db, &user])
}

/// The password of the first `host:port:database:user:password` line matching `wanted`
/// (`*` matches anything; `\:` and `\\` are escapes; `#` starts a comment line).
fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() == 5 && fields[..4].iter().zip(wanted).all(|(f, w)| f == "*" || f == w) {
            return Some(fields.pop().expect("five fields"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_matching() {
        let text = "# comment\nother:5432:*:*:nope\nlocalhost:5432:db:alice:s\\:ecret\n*:*:*:*:any";
        assert_eq!(
            pgpass_lookup(text, ["localhost", "5432", "db", "alice"]).as_deref(),
            Some("s:ecret")
        );
        assert_eq!(pgpass_lookup(text, ["h", "1", "d", "u"]).as_deref(), Some("any"));
        assert_eq!(pgpass_lookup("a:1:d:u:p", ["a", "2", "d", "u"]), None);
    }

    #[test]
    fn flags_and_urls() {
        let args = DbArgs {
            database_url: None,
            db_host: "db.example".into(),
            db_port: 6543,
            db_name: Some("app".into()),
            db_user: "worker".into(),
        };
        assert!(configured(&args));
        let c = config(&args).unwrap();
        assert_eq!(c.get_ports(), &[6543]);
        assert_eq!(c.get_dbname(), Some("app"));
        let url =
            DbArgs { database_url: Some("postgresql://u:pw@h:1/d".into()), db_name: None, ..args };
        let c = config(&url).unwrap();
        assert_eq!((c.get_user(), c.get_password()), (Some("u"), Some(&b"pw"[..])));
        assert!(config(&DbArgs { database_url: Some("postgresql://[bad".into()), ..url }).is_err());
    }
}
