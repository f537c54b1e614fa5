//! The extension's errors and the one place that maps them to SQLSTATEs and raises them.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use steadytext_api::client::ClientError;
use steadytext_api::validate::InputError;
use steadytext_api::wire::ErrorCode;

/// Everything a pg_steadytext SQL function can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// A required argument was NULL (22004).
    #[error("{0} must not be null")]
    Null(&'static str),
    /// An array argument contained NULL (22004).
    #[error("{arg}[{index}] must not be null")]
    NullElement {
        /// SQL argument name.
        arg: &'static str,
        /// 1-based position.
        index: usize,
    },
    /// An argument out of its documented range (22023), or an invalid regex (2201B).
    #[error(transparent)]
    Input(#[from] InputError),
    /// `timeout_seconds` below zero (22023).
    #[error("timeout_seconds must not be negative, got {0}")]
    NegativeTimeout(i32),
    /// Enqueueing would exceed `steadytext.max_queue_size` (53400).
    #[error(
        "queue is full: {depth} requests pending or processing, adding {adding} would exceed \
         steadytext.max_queue_size ({limit})"
    )]
    QueueFull {
        /// Requests pending or processing now.
        depth: i64,
        /// Requests this call would add.
        adding: usize,
        /// The setting's value.
        limit: i32,
    },
    /// Enqueueing would take the calling role beyond `steadytext.max_queue_size_per_role`
    /// (53400).
    #[error(
        "role {role} has {depth} requests pending or processing, adding {adding} would exceed \
         steadytext.max_queue_size_per_role ({limit})"
    )]
    RoleQueueFull {
        /// The role whose requests they are.
        role: String,
        /// Its requests pending or processing now.
        depth: i64,
        /// Requests this call would add.
        adding: usize,
        /// The setting's value.
        limit: i32,
    },
    /// A role that is not a superuser asked for a priority above `steadytext.max_priority`
    /// (42501).
    #[error(
        "priority {priority} is above steadytext.max_priority ({limit}), the highest a role that \
         is not a superuser may ask for"
    )]
    PriorityAboveCeiling {
        /// The priority asked for.
        priority: i32,
        /// The setting's value.
        limit: i32,
    },
    /// `steadytext_worker_status()` called by a role that may not see the workers (42501).
    #[error(
        "permission denied to see the queue workers: steadytext_worker_status() needs membership \
         in steadytext_worker or pg_monitor"
    )]
    WorkersHidden,
    /// The extension's own objects were not found (55000): called while it is being dropped.
    #[error("pg_steadytext is not installed in this database")]
    NotInstalled,
    /// No request with this id is visible to the caller: never enqueued by its role, or
    /// finished and purged after `steadytext.queue_retention` (P0002).
    #[error(
        "async request {0} does not exist: it was never enqueued by this role, or it finished \
         more than steadytext.queue_retention ago and was purged"
    )]
    NotFound(String),
    /// The request failed for good (38000).
    #[error("async request {id} failed: {error}")]
    Failed {
        /// Request id.
        id: String,
        /// The worker's error.
        error: String,
    },
    /// The request was cancelled (55000).
    #[error("async request {0} was cancelled")]
    Cancelled(String),
    /// Waiting on a request the current, uncommitted transaction enqueued or changed (55000).
    #[error(
        "async request {0} was enqueued or changed by the current transaction, which has not \
         committed; no worker can see it until then"
    )]
    OwnTransaction(String),
    /// Waiting in a transaction whose snapshot can never see the result (55000).
    #[error(
        "cannot wait for async request {0} in a REPEATABLE READ or SERIALIZABLE transaction: \
         its completion would never become visible"
    )]
    FrozenSnapshot(String),
    /// The request was not finished within `timeout_seconds` (55000; not 57014, which PL/pgSQL
    /// `WHEN OTHERS` cannot catch and which means the statement itself was cancelled).
    #[error("timed out after {seconds} s waiting for async request {id} (status {status})")]
    Timeout {
        /// Request id.
        id: String,
        /// The timeout.
        seconds: i32,
        /// Its status at the deadline.
        status: String,
    },
    /// The typed embedding accessor was used on a request that is not an embedding (22023).
    #[error("async request {id} is a {function_name} request, not an embedding")]
    NotAnEmbedding {
        /// Request id.
        id: String,
        /// Its function.
        function_name: String,
    },
    /// An element of a text array argument that is not a uuid's text form (22P02).
    #[error("{arg}[{index}] is not a valid uuid: {value:?}")]
    MalformedUuid {
        /// SQL argument name.
        arg: &'static str,
        /// 1-based position.
        index: usize,
        /// The element.
        value: String,
    },
    /// A completed embedding whose result is not a vector's text form (22P02).
    #[error("async request {0} holds a malformed embedding (expected [x,y,...])")]
    MalformedEmbedding(String),
    /// The daemon could not be reached (08001) or sent something unreadable (08P01).
    #[error(transparent)]
    Daemon(#[from] ClientError),
    /// An internal function called by anything but the extension's own functions (42501).
    #[error("{0} may only be called by pg_steadytext's own functions")]
    Private(&'static str),
    /// A derivation's options that do not fit its kind (22023).
    #[error("options of a {kind} derivation: {reason}")]
    DerivationOptions {
        /// The derivation's kind.
        kind: String,
        /// What is wrong with them.
        reason: String,
    },
    /// A `vector(n)` destination whose `n` is not the embedding model's dimension (42804).
    #[error(
        "destination \"{column}\" is vector({declared}), and the embedding model gives {model} dimensions"
    )]
    VectorDimensions {
        /// The destination column.
        column: String,
        /// Its declared dimension.
        declared: i32,
        /// The model's.
        model: usize,
    },
    /// A derivation's input that is not one SQL expression (42601).
    #[error("input must be one SQL expression over the row's columns")]
    NotAnExpression,
    /// A derivation's input expression that is empty (22023).
    #[error("input must not be empty")]
    EmptyInput,
    /// A derivation's input expression that calls volatile functions (42P17).
    #[error("the input expression must not call volatile functions, and it calls {0}")]
    VolatileInput(String),
    /// A failure of the SPI layer (XX000).
    #[error("internal error: {0}")]
    Spi(#[from] pgrx::spi::SpiError),
    /// The strong random source failed while making a request id (XX000).
    #[error("could not generate random values for a request id")]
    Random,
}

impl SqlError {
    /// The SQLSTATE of this error; the only mapping from errors to SQLSTATEs in the extension.
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            SqlError::Null(_) | SqlError::NullElement { .. } => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            SqlError::Input(InputError::Regex(_)) => ERRCODE_INVALID_REGULAR_EXPRESSION,
            SqlError::Input(_) | SqlError::NegativeTimeout(_) | SqlError::NotAnEmbedding { .. } => {
                ERRCODE_INVALID_PARAMETER_VALUE
            }
            SqlError::MalformedUuid { .. } | SqlError::MalformedEmbedding(_) => {
                ERRCODE_INVALID_TEXT_REPRESENTATION
            }
            SqlError::QueueFull { .. } | SqlError::RoleQueueFull { .. } => {
                ERRCODE_CONFIGURATION_LIMIT_EXCEEDED
            }
            SqlError::PriorityAboveCeiling { .. } | SqlError::WorkersHidden => {
                ERRCODE_INSUFFICIENT_PRIVILEGE
            }
            SqlError::NotInstalled => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            SqlError::NotFound(_) => ERRCODE_NO_DATA_FOUND,
            SqlError::Failed { .. } => ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
            SqlError::Cancelled(_)
            | SqlError::OwnTransaction(_)
            | SqlError::FrozenSnapshot(_)
            | SqlError::Timeout { .. } => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            SqlError::Daemon(ClientError::BadUrl { .. }) => ERRCODE_INVALID_PARAMETER_VALUE,
            SqlError::Daemon(ClientError::Unreachable { .. }) => {
                ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
            }
            SqlError::Daemon(ClientError::Protocol { .. }) => ERRCODE_PROTOCOL_VIOLATION,
            SqlError::Daemon(ClientError::Daemon { code, .. }) => match code {
                ErrorCode::InvalidParameter | ErrorCode::Unfinished => {
                    ERRCODE_INVALID_PARAMETER_VALUE
                }
                ErrorCode::InvalidRegex => ERRCODE_INVALID_REGULAR_EXPRESSION,
                ErrorCode::LimitExceeded => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                ErrorCode::ModelUnavailable | ErrorCode::Unavailable => {
                    ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
                }
                ErrorCode::Unauthorized => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                ErrorCode::NotFound => ERRCODE_PROTOCOL_VIOLATION,
                ErrorCode::Internal => ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
            },
            SqlError::Private(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            SqlError::DerivationOptions { .. } | SqlError::EmptyInput => {
                ERRCODE_INVALID_PARAMETER_VALUE
            }
            SqlError::VolatileInput(_) => ERRCODE_INVALID_OBJECT_DEFINITION,
            SqlError::NotAnExpression => ERRCODE_SYNTAX_ERROR,
            SqlError::VectorDimensions { .. } => ERRCODE_DATATYPE_MISMATCH,
            SqlError::Spi(_) | SqlError::Random => ERRCODE_INTERNAL_ERROR,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            SqlError::QueueFull { .. } => {
                Some("wait for workers to drain the queue, or raise steadytext.max_queue_size")
            }
            SqlError::RoleQueueFull { .. } => Some(
                "wait for this role's requests to finish, or ask a superuser to raise \
                 steadytext.max_queue_size_per_role (also per role: ALTER ROLE ... SET)",
            ),
            SqlError::OwnTransaction(_) => Some("commit, then call steadytext_get_async_result"),
            SqlError::VolatileInput(_) => Some(
                "a row's derived value must follow from its columns alone; mark a function that \
                 is IMMUTABLE or STABLE as such",
            ),
            SqlError::Timeout { .. } => {
                Some("is a steadytext worker running? raise timeout_seconds to wait longer")
            }
            SqlError::Daemon(ClientError::Daemon { code: ErrorCode::Unfinished, .. }) => {
                Some("raise max_tokens so that the constrained output can complete")
            }
            SqlError::Daemon(ClientError::Daemon { code: ErrorCode::Unauthorized, .. }) => {
                Some("set steadytext.daemon_token to the daemon's --token")
            }
            SqlError::Daemon(ClientError::Protocol { .. }) => {
                Some("check that steadytext.daemon_url points at a steadytext daemon of the same version")
            }
            _ => None,
        }
    }

    /// Raises this error as a PostgreSQL ERROR (does not return).
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "pg_steadytext");
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

/// Unwraps a SQL function's result, raising the error with its SQLSTATE.
pub fn or_raise<T>(result: Result<T, SqlError>) -> T {
    result.unwrap_or_else(|e| e.raise())
}

/// A required argument: NULL is an error (22004).
pub fn required<T>(arg: &'static str, value: Option<T>) -> Result<T, SqlError> {
    value.ok_or(SqlError::Null(arg))
}

/// A required array without NULL elements.
pub fn required_elements<T>(
    arg: &'static str,
    values: Option<Vec<Option<T>>>,
) -> Result<Vec<T>, SqlError> {
    required(arg, values)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or(SqlError::NullElement { arg, index: i + 1 }))
        .collect()
}
