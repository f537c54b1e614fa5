//! What every HTTP handler shares: the service, the token, and how a JSON body is read.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use steadytext_api::limits::MAX_BODY_BYTES;

use crate::error::DaemonError;
use crate::service::Service;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The operations.
    pub service: Service,
    /// Bearer token every call but `/health` and the dashboard must carry, when set.
    pub token: Option<String>,
    /// The dashboard (`/ui`), which checks the token its own way.
    pub ui: std::sync::Arc<crate::ui::Ui>,
}

/// A JSON body, or a [`DaemonError::BadBody`] naming what is wrong with it
/// ([`DaemonError::BodyTooLarge`] beyond [`MAX_BODY_BYTES`]).
pub fn body<T: DeserializeOwned>(b: Result<Json<T>, JsonRejection>) -> Result<T, DaemonError> {
    b.map(|Json(t)| t).map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            DaemonError::BodyTooLarge { limit: MAX_BODY_BYTES }
        } else {
            DaemonError::BadBody(e.body_text())
        }
    })
}
