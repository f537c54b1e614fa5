//! Errors of the daemon and worker, and the one place that maps them to the wire's error codes
//! and HTTP statuses.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use steadytext_api::validate::InputError;
use steadytext_api::wire::{ErrorCode, ErrorInfo, ErrorReply};
use steadytext_core::CoreError;

/// Everything that can go wrong in `steadytext serve` / `steadytext worker`.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A request argument was refused by the shared validation.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The engine refused or failed a request.
    #[error(transparent)]
    Engine(#[from] CoreError),
    /// The model a request needs is not loaded.
    #[error("no {role} model is available: {reason}")]
    ModelUnavailable {
        /// generation, embedding or rerank.
        role: &'static str,
        /// Why it is not loaded.
        reason: String,
    },
    /// A request lacked the bearer token the daemon requires.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The engine thread has stopped (the daemon is shutting down).
    #[error("the engine has stopped")]
    EngineStopped,
    /// The request's time budget ran out.
    #[error("timed out after {0} s")]
    Timeout(u64),
    /// A request asks for a feature the daemon does not offer (e.g. OpenAI's `n` > 1, tools).
    #[error("not supported by steadytext: {0}")]
    Unsupported(String),
    /// A request body that is not what the endpoint expects.
    #[error("invalid request body: {0}")]
    BadBody(String),
    /// The persistent cache could not be opened.
    #[error("cache {path}: {reason}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PostgreSQL error in the worker.
    #[error("postgresql: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// A request body beyond the daemon's limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// `steadytext_api::limits::MAX_BODY_BYTES`.
        limit: usize,
    },
    /// `--token-file` could not be read or holds no token.
    #[error("cannot read the token from {}: {reason}", path.display())]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The worker's database has no pg_steadytext extension.
    #[error(
        "pg_steadytext is not installed in the worker's database (CREATE EXTENSION pg_steadytext)"
    )]
    ExtensionMissing,
    /// The database's pg_steadytext is older than what this binary's statements need.
    #[error(
        "pg_steadytext {found} is installed in this database, and this needs {needed}: run ALTER EXTENSION pg_steadytext UPDATE"
    )]
    ExtensionOutdated {
        /// `extversion` of the database's extension.
        found: String,
        /// The oldest version that works.
        needed: &'static str,
    },
    /// A queue row whose parameters do not describe a valid request.
    #[error("invalid queue parameters for {function}: {reason}")]
    BadJob {
        /// The row's function_name.
        function: String,
        /// What is wrong.
        reason: String,
    },
    /// Other I/O failures.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl DaemonError {
    /// The wire error class of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DaemonError::Input(e) => ErrorCode::from(e),
            DaemonError::Engine(e) => match e {
                CoreError::Input(e) => ErrorCode::from(e),
                CoreError::Prompt(_)
                | CoreError::EmptyText { .. }
                | CoreError::MaxTokens(_)
                | CoreError::EmptyQuery
                | CoreError::NoDocuments
                | CoreError::EmptyDocument { .. } => ErrorCode::InvalidParameter,
                CoreError::InvalidSchema(_)
                | CoreError::InvalidChoices(_)
                | CoreError::NoChatTemplate { .. }
                | CoreError::ChatMessage(_) => ErrorCode::InvalidParameter,
                CoreError::InvalidRegex(_) => ErrorCode::InvalidRegex,
                CoreError::ConstraintUnfinished { .. } => ErrorCode::Unfinished,
                CoreError::ContextOverflow { .. } => ErrorCode::LimitExceeded,
                CoreError::NoModelDir(_)
                | CoreError::ModelMissing { .. }
                | CoreError::ModelLoad { .. }
                | CoreError::ModelFormat { .. }
                | CoreError::Checksum { .. }
                | CoreError::UnsupportedReranker { .. }
                | CoreError::UnknownModel { .. }
                | CoreError::WrongRole { .. }
                | CoreError::ModelNotFetched { .. }
                | CoreError::NotDownloadable { .. }
                | CoreError::DownloadsDisabled { .. } => ErrorCode::ModelUnavailable,
                _ => ErrorCode::Internal,
            },
            DaemonError::ModelUnavailable { .. } => ErrorCode::ModelUnavailable,
            DaemonError::Unauthorized => ErrorCode::Unauthorized,
            DaemonError::BodyTooLarge { .. } => ErrorCode::LimitExceeded,
            DaemonError::EngineStopped => ErrorCode::Unavailable,
            DaemonError::BadBody(_) | DaemonError::BadJob { .. } | DaemonError::Unsupported(_) => {
                ErrorCode::InvalidParameter
            }
            DaemonError::Timeout(_)
            | DaemonError::Cache { .. }
            | DaemonError::Bind { .. }
            | DaemonError::Db(_)
            | DaemonError::ExtensionMissing
            | DaemonError::ExtensionOutdated { .. }
            | DaemonError::TokenFile { .. }
            | DaemonError::Io(_) => ErrorCode::Internal,
        }
    }

    /// Whether retrying the same request later could succeed (the worker retries only those,
    /// while steadytext_queue_fail finds retries left): engine failures, unavailable models and
    /// timed-out attempts, never invalid input.
    pub fn retryable(&self) -> bool {
        matches!(
            self.code(),
            ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::ModelUnavailable
        )
    }
}

impl DaemonError {
    /// The HTTP status of this error: 400 for a request the OpenAI-compatible endpoints
    /// cannot serve as asked (an unsupported feature, a model without a chat template, a chat
    /// message it cannot render); for a statement PostgreSQL refused (the dashboard's actions),
    /// the status of its SQLSTATE ([`sqlstate_status`]); 503 for a database without the
    /// extension it needs; else the status of its wire class ([`http_status`]).
    pub fn http_status(&self) -> StatusCode {
        if let Some(refusal) = self.refusal() {
            return sqlstate_status(refusal.code());
        }
        match self {
            DaemonError::Unsupported(_)
            | DaemonError::Engine(CoreError::NoChatTemplate { .. } | CoreError::ChatMessage(_)) => {
                StatusCode::BAD_REQUEST
            }
            DaemonError::ExtensionMissing | DaemonError::ExtensionOutdated { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => http_status(self.code()),
        }
    }

    /// PostgreSQL's error reply to a statement (its SQLSTATE and message), when this is one:
    /// the database refused the statement, and the connection itself is fine.
    pub fn refusal(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            DaemonError::Db(e) => e.as_db_error(),
            _ => None,
        }
    }
}

/// HTTP status of a statement PostgreSQL refused, by its SQLSTATE: 403 for a missing privilege
/// (42501), 409 for an object in the wrong state or a conflict (classes 55 and 40), 422 for a
/// bad value (class 22), 404 for an object that does not exist (42704, P0002), else 500.
pub fn sqlstate_status(code: &tokio_postgres::error::SqlState) -> StatusCode {
    match code.code() {
        "42501" => StatusCode::FORBIDDEN,
        "42704" | "P0002" => StatusCode::NOT_FOUND,
        c if c.starts_with("55") || c.starts_with("40") => StatusCode::CONFLICT,
        c if c.starts_with("22") => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// HTTP status of each wire error class.
pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidParameter | ErrorCode::InvalidRegex | ErrorCode::Unfinished => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ErrorCode::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ModelUnavailable | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error reply with the given class and message.
pub fn error_response(code: ErrorCode, message: String) -> Response {
    let body = ErrorReply { error: ErrorInfo { code, message } };
    (http_status(code), axum::Json(body)).into_response()
}

impl IntoResponse for DaemonError {
    fn into_response(self) -> Response {
        let body = ErrorReply { error: ErrorInfo { code: self.code(), message: self.to_string() } };
        (self.http_status(), axum::Json(body)).into_response()
    }
}
