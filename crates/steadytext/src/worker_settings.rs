//! The worker's effective settings, resolved on every cycle with the precedence
//! flag > environment > GUC (so `ALTER SYSTEM …; SELECT pg_reload_conf();` reaches running
//! workers) > default. clap has already merged flags and environment.

use std::time::Duration;

use tokio_postgres::Client;

use crate::cli::WorkerTuning;
use crate::error::DaemonError;

/// Default claim batch size (GUC steadytext.worker_concurrency).
pub const DEFAULT_CONCURRENCY: u32 = 1;
/// Default idle poll interval in seconds (GUC steadytext.worker_poll_interval).
pub const DEFAULT_POLL_INTERVAL_S: u32 = 1;
/// Default retries (GUC steadytext.max_retries).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Default per-attempt time limit in seconds (GUC steadytext.worker_timeout).
pub const DEFAULT_TIMEOUT_S: u32 = 300;

/// The settings one worker cycle runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Requests claimed and processed at once.
    pub concurrency: u32,
    /// Idle wait before polling when no NOTIFY arrives.
    pub poll_interval: Duration,
    /// Retries before a request fails for good (further capped by the request's own).
    pub max_retries: u32,
    /// Time limit of one attempt.
    pub timeout: Duration,
}

/// Reads the GUCs and resolves every setting.
pub async fn resolve(client: &Client, tuning: &WorkerTuning) -> Result<Settings, DaemonError> {
    let row = client
        .query_one(
            "SELECT current_setting('steadytext.worker_concurrency', true), \
                    current_setting('steadytext.worker_poll_interval', true), \
                    current_setting('steadytext.max_retries', true), \
                    current_setting('steadytext.worker_timeout', true)",
            &[],
        )
        .await?;
    let guc = |i: usize| row.get::<_, Option<String>>(i);
    Ok(Settings {
        concurrency: pick(tuning.concurrency.map(u32::from), guc(0), DEFAULT_CONCURRENCY, 1..=256),
        poll_interval: Duration::from_secs(u64::from(pick(
            tuning.poll_interval,
            guc(1),
            DEFAULT_POLL_INTERVAL_S,
            1..=3600,
        ))),
        max_retries: pick(tuning.max_retries, guc(2), DEFAULT_MAX_RETRIES, 0..=100),
        timeout: Duration::from_secs(u64::from(pick(
            tuning.timeout,
            guc(3),
            DEFAULT_TIMEOUT_S,
            1..=86_400,
        ))),
    })
}

/// The flag/env value, else the GUC's (when it parses and is in range), else the default.
fn pick(
    flag: Option<u32>,
    guc: Option<String>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> u32 {
    flag.or_else(|| guc.as_deref().and_then(parse_guc_seconds).filter(|v| range.contains(v)))
        .unwrap_or(default)
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
        assert_eq!(pick(Some(7), Some("3".into()), 1, 1..=256), 7);
        assert_eq!(pick(None, Some("3".into()), 1, 1..=256), 3);
        assert_eq!(pick(None, None, 1, 1..=256), 1);
        // an out-of-range or unparsable GUC falls back to the default
        assert_eq!(pick(None, Some("999".into()), 1, 1..=256), 1);
        assert_eq!(pick(None, Some("".into()), 1, 1..=256), 1);
    }
}
