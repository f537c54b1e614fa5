//! What every HTTP handler shares: the service, the token, and how a JSON body is read.

use axum::extract::rejection::JsonRejection;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::DaemonError;
use crate::service::Service;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The operations.
    pub service: Service,
    /// Bearer token every call but `/health` must carry, when set.
    pub token: Option<String>,
}

/// A JSON body, or a [`DaemonError::BadBody`] naming what is wrong with it.
pub fn body<T: DeserializeOwned>(b: Result<Json<T>, JsonRejection>) -> Result<T, DaemonError> {
    b.map(|Json(t)| t).map_err(|e| DaemonError::BadBody(e.body_text()))
}
