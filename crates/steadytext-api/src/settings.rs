//! The queue workers' settings that exist both as a GUC of the extension and as a flag and
//! environment variable of `steadytext worker`: each one's names, default and range, declared
//! once here and read by `extension/src/gucs.rs`, the worker's flags and the worker's resolution
//! of its effective settings.

use std::ffi::CStr;

/// An integer worker setting (a GUC, overridable by a worker flag or environment variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSetting {
    /// The GUC.
    pub guc: &'static CStr,
    /// The worker flag (without `--`).
    pub flag: &'static str,
    /// The worker's environment variable.
    pub env: &'static str,
    /// Value when neither the flag, the variable nor the GUC sets it.
    pub default: i32,
    /// Smallest allowed value.
    pub min: i32,
    /// Largest allowed value.
    pub max: i32,
    /// The unit, when the value is a duration: `s` (seconds).
    pub unit: Option<&'static str>,
}

impl WorkerSetting {
    /// The GUC's name as text.
    pub fn guc_name(&self) -> &'static str {
        self.guc.to_str().expect("GUC names are ASCII")
    }

    /// Whether `value` is in range.
    pub fn allows(&self, value: i64) -> bool {
        (i64::from(self.min)..=i64::from(self.max)).contains(&value)
    }

    /// The range for clap's `value_parser!(…).range(…)`.
    pub fn range(&self) -> std::ops::RangeInclusive<i64> {
        i64::from(self.min)..=i64::from(self.max)
    }

    /// `Default 1, range 1..256; …` — the sentence the GUC's long description starts with.
    pub fn describe(&self) -> String {
        let unit = self.unit.unwrap_or("");
        let quote = if unit.is_empty() { "" } else { "'" };
        format!(
            "Default {quote}{}{unit}{quote}, range {}{unit}..{}{unit}; the worker's --{} (env {}) \
             overrides it.",
            self.default, self.min, self.max, self.flag, self.env
        )
    }
}

/// Requests each worker runs at once (`steadytext.worker_concurrency`); 0, the default, is as
/// many as its engine decodes together (the daemon's `--max-batch`, default 8), so that the
/// continuous batch fills itself without a setting. More would only wait in the engine holding
/// a lease; fewer leave the batch part empty while requests are pending. Two embeddings share
/// a slot (the engine embeds what waits together in one call).
pub const WORKER_CONCURRENCY: WorkerSetting = WorkerSetting {
    guc: c"steadytext.worker_concurrency",
    flag: "concurrency",
    env: "STEADYTEXT_WORKER_CONCURRENCY",
    default: 0,
    min: 0,
    max: 256,
    unit: None,
};

/// Seconds between a worker's polls while a pending request waits to become due
/// (`steadytext.worker_poll_interval`); with nothing pending it polls once a minute.
pub const WORKER_POLL_INTERVAL: WorkerSetting = WorkerSetting {
    guc: c"steadytext.worker_poll_interval",
    flag: "poll-interval",
    env: "STEADYTEXT_WORKER_POLL_INTERVAL",
    default: 1,
    min: 1,
    max: 3600,
    unit: Some("s"),
};

/// Retries of a failing request (`steadytext.max_retries`; also recorded per request at
/// enqueue).
pub const MAX_RETRIES: WorkerSetting = WorkerSetting {
    guc: c"steadytext.max_retries",
    flag: "max-retries",
    env: "STEADYTEXT_WORKER_MAX_RETRIES",
    default: 3,
    min: 0,
    max: 100,
    unit: None,
};

/// Seconds one attempt may run (`steadytext.worker_timeout`).
pub const WORKER_TIMEOUT: WorkerSetting = WorkerSetting {
    guc: c"steadytext.worker_timeout",
    flag: "timeout",
    env: "STEADYTEXT_WORKER_TIMEOUT",
    default: 300,
    min: 1,
    max: 86_400,
    unit: Some("s"),
};

/// Seconds finished requests (completed, failed, cancelled) are kept before the workers delete
/// them (`steadytext.queue_retention`; default 7 days, 0 keeps them forever).
pub const QUEUE_RETENTION: WorkerSetting = WorkerSetting {
    guc: c"steadytext.queue_retention",
    flag: "queue-retention",
    env: "STEADYTEXT_WORKER_QUEUE_RETENTION",
    default: 604_800,
    min: 0,
    max: 315_360_000,
    unit: Some("s"),
};

/// Every worker setting.
pub const ALL: [WorkerSetting; 5] =
    [WORKER_CONCURRENCY, WORKER_POLL_INTERVAL, MAX_RETRIES, WORKER_TIMEOUT, QUEUE_RETENTION];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_default_range_and_override() {
        assert_eq!(
            WORKER_TIMEOUT.describe(),
            "Default '300s', range 1s..86400s; the worker's --timeout (env \
             STEADYTEXT_WORKER_TIMEOUT) overrides it."
        );
        assert_eq!(
            WORKER_CONCURRENCY.describe(),
            "Default 0, range 0..256; the worker's --concurrency (env \
             STEADYTEXT_WORKER_CONCURRENCY) overrides it."
        );
    }

    #[test]
    fn defaults_are_in_range() {
        for s in ALL {
            assert!(s.allows(i64::from(s.default)), "{}", s.guc_name());
            assert!(s.guc_name().starts_with("steadytext."));
            assert!(s.env.starts_with("STEADYTEXT_WORKER_"));
        }
        assert!(WORKER_CONCURRENCY.allows(0) && !WORKER_CONCURRENCY.allows(257));
    }
}
