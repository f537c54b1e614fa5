//! The worker's effective settings, resolved on every cycle with the precedence
//! flag > environment > GUC (so `ALTER SYSTEM …; SELECT pg_reload_conf();` reaches running
//! workers) > default. clap has already merged flags and environment.

use std::time::Duration;

use steadytext_api::settings::{self, WorkerSetting};
use tokio_postgres::Client;

use crate::cli::WorkerTuning;
use crate::error::DaemonError;
use crate::queue_sql::Statements;
use crate::worker::wake::Peers;

/// The settings one worker cycle runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Requests claimed and processed at once.
    pub concurrency: u32,
    /// Idle wait before polling when no NOTIFY arrives.
    pub poll_interval: Duration,
    /// Retries before a request fails for good (further capped by the request's own).
    pub max_retries: u32,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// How long finished requests are kept before this worker deletes them; `None`: forever.
    pub retention: Option<Duration>,
    /// The workers that were running, with a heartbeat within `lease`, when the settings were
    /// read (which of them claim on an announcement: `wake.rs`).
    pub peers: Peers,
}

/// Reads the GUCs and resolves every setting; a concurrency of 0 becomes `max_batch`, the most
/// generations the worker's engine decodes together.
pub async fn resolve(
    client: &Client,
    sql: &Statements,
    tuning: &WorkerTuning,
    max_batch: u32,
    lease: Duration,
) -> Result<Settings, DaemonError> {
    let names: Vec<&str> = settings::ALL.iter().map(WorkerSetting::guc_name).collect();
    let lease = format!("{} seconds", lease.as_secs());
    let row = client
        .query_one(&sql.settings, &[&names[0], &names[1], &names[2], &names[3], &names[4], &lease])
        .await?;
    let value = |i: usize, flag: Option<u32>| {
        let setting = settings::ALL[i];
        let guc = row.get::<_, Option<String>>(i);
        pick(flag, guc, &setting)
    };
    Ok(Settings {
        concurrency: match value(0, tuning.concurrency.map(u32::from)) {
            0 => max_batch.max(1),
            n => n,
        },
        poll_interval: Duration::from_secs(u64::from(value(1, tuning.poll_interval))),
        max_retries: value(2, tuning.max_retries),
        timeout: Duration::from_secs(u64::from(value(3, tuning.timeout))),
        retention: match value(4, tuning.queue_retention) {
            0 => None,
            secs => Some(Duration::from_secs(u64::from(secs))),
        },
        peers: Peers(row.get(5)),
    })
}

/// The flag/env value, else the GUC's (when it parses and is in range), else the default.
fn pick(flag: Option<u32>, guc: Option<String>, setting: &WorkerSetting) -> u32 {
    flag.or_else(|| {
        guc.as_deref().and_then(parse_guc_seconds).filter(|v| setting.allows(i64::from(*v)))
    })
    .unwrap_or(setting.default as u32)
}

/// An integer GUC value as `current_setting` prints it: plain, or with a time unit
/// (`ms`, `s`, `min`, `h`, `d`), converted to whole seconds for units.
fn parse_guc_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000,
        "min" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    u32::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guc_values_with_units() {
        assert_eq!(parse_guc_seconds("4"), Some(4));
        assert_eq!(parse_guc_seconds("1s"), Some(1));
        assert_eq!(parse_guc_seconds("5min"), Some(300));
        assert_eq!(parse_guc_seconds("2000ms"), Some(2));
        assert_eq!(parse_guc_seconds("x"), None);
        assert_eq!(parse_guc_seconds("3 parsecs"), None);
    }

    #[test]
    fn precedence_flag_then_guc_then_default() {
        let s = &settings::WORKER_CONCURRENCY;
        assert_eq!(pick(Some(7), Some("3".into()), s), 7);
        assert_eq!(pick(None, Some("3".into()), s), 3);
        assert_eq!(pick(None, None, s), 0);
        // an out-of-range or unparsable GUC falls back to the default
        assert_eq!(pick(None, Some("999".into()), s), 0);
        assert_eq!(pick(None, Some("".into()), s), 0);
    }

    /// The names `resolve` queries are the settings' own, in the order it reads them.
    #[test]
    fn settings_are_read_in_declaration_order() {
        let names: Vec<&str> = settings::ALL.iter().map(WorkerSetting::guc_name).collect();
        assert_eq!(
            names,
            [
                "steadytext.worker_concurrency",
                "steadytext.worker_poll_interval",
                "steadytext.max_retries",
                "steadytext.worker_timeout",
                "steadytext.queue_retention"
            ]
        );
    }
}
