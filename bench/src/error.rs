//! The benchmark library's error type.

/// Everything a benchmark can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A process could not be started or a file not read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A query failed.
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
    /// A child process misbehaved (exited early, printed something unexpected, failed).
    #[error("{0}")]
    Process(String),
    /// Something did not happen within its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A `steadytext` process did not start or become ready.
    #[error(transparent)]
    Daemon(#[from] steadytext_testkit::daemon::DaemonError),
    /// Percentiles of an empty sample were asked for.
    #[error("no samples")]
    NoSamples,
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// Result of the benchmark library.
pub type Result<T> = std::result::Result<T, BenchError>;
