//! The HTTP API of `steadytext serve`: native endpoints for the extension, OpenAI-compatible
//! ones for other applications, `/health`, `/metrics` and the dashboard (`/ui`, `crate::ui`).

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use steadytext_api::{limits, wire};

use crate::error::DaemonError;

mod native;
mod openai;
mod openai_stream;
mod state;

pub use state::AppState;

/// The router with every endpoint.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(wire::GENERATE_PATH, post(native::generate))
        .route(wire::EMBED_PATH, post(native::embed))
        .route(wire::RERANK_PATH, post(native::rerank))
        .route("/v1/models", get(openai::models))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/rerank", post(openai::rerank))
        .route("/metrics", get(native::metrics))
        .layer(DefaultBodyLimit::max(limits::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route(wire::HEALTH_PATH, get(native::health))
        .merge(crate::ui::routes(state.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found(req: Request) -> Response {
    crate::error::error_response(
        wire::ErrorCode::NotFound,
        format!("no endpoint {} {}", req.method(), req.uri().path()),
    )
}

/// Refuses calls without the configured bearer token.
async fn authorize(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| same_secret(given, token)) {
            return DaemonError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

/// Whether `given` equals `secret`, in time that does not depend on where they differ: both are
/// hashed (so their lengths do not show either) and the digests compared without branching.
pub(crate) fn same_secret(given: &str, secret: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(secret.as_bytes()));
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Records every call's endpoint, status and latency.
async fn observe(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    s.service.metrics.record_http(&endpoint, response.status().as_u16(), started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_exactly() {
        assert!(same_secret("s3cret", "s3cret"));
        for other in ["", "s3cre", "s3cret ", "S3cret", "s3creu"] {
            assert!(!same_secret(other, "s3cret"), "{other:?}");
        }
    }
}
