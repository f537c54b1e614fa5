//! The HTTP API of `steadytext serve`: native endpoints for the extension, OpenAI-compatible
//! ones for other applications, `/health` and `/metrics`.

use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use steadytext_api::wire::{self, EmbedBody, GenerateBody, RerankBody};

use crate::error::DaemonError;
use crate::openai;
use crate::service::Service;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The operations.
    pub service: Service,
    /// Bearer token every call but `/health` must carry, when set.
    pub token: Option<String>,
}

/// The router with every endpoint.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(wire::GENERATE_PATH, post(generate))
        .route(wire::EMBED_PATH, post(embed))
        .route(wire::RERANK_PATH, post(rerank))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/rerank", post(openai::rerank))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route(wire::HEALTH_PATH, get(health))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// A JSON body, or a [`DaemonError::BadBody`] naming what is wrong with it.
pub fn body<T: DeserializeOwned>(b: Result<Json<T>, JsonRejection>) -> Result<T, DaemonError> {
    b.map(|Json(t)| t).map_err(|e| DaemonError::BadBody(e.body_text()))
}

async fn generate(
    State(s): State<AppState>,
    b: Result<Json<GenerateBody>, JsonRejection>,
) -> Result<Json<wire::GenerateReply>, DaemonError> {
    Ok(Json(s.service.generate(body(b)?).await?))
}

async fn embed(
    State(s): State<AppState>,
    b: Result<Json<EmbedBody>, JsonRejection>,
) -> Result<Json<wire::EmbedReply>, DaemonError> {
    Ok(Json(s.service.embed(body(b)?).await?))
}

async fn rerank(
    State(s): State<AppState>,
    b: Result<Json<RerankBody>, JsonRejection>,
) -> Result<Json<wire::RerankReply>, DaemonError> {
    Ok(Json(s.service.rerank(body(b)?).await?))
}

async fn health(State(s): State<AppState>) -> Response {
    let engine = &s.service.engine;
    let model = |m: &Result<crate::engine_host::ModelInfo, String>| match m {
        Ok(i) => json!({"status": "loaded", "name": i.name, "file": i.file, "sha256": i.digest}),
        Err(reason) => json!({"status": "unavailable", "reason": reason}),
    };
    let cache = s.service.cache.stats();
    let ok = engine.generation.is_ok() || engine.embedding.is_ok();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "version": steadytext_api::VERSION,
        "api_version": steadytext_api::version::API_VERSION,
        "models": {
            "generation": model(&engine.generation),
            "embedding": model(&engine.embedding),
            "rerank": engine.rerank.as_ref().map_or_else(
                || json!({"status": "fallback", "method": "embedding-cosine"}),
                model,
            ),
        },
        "cache": {"hits": cache.hits, "misses": cache.misses,
                  "memory_entries": cache.memory_entries, "persistent": cache.persistent},
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let c = s.service.cache.stats();
    let text = s.service.metrics.render(&[
        ("steadytext_cache_hits", "result cache hits since start", c.hits as f64),
        ("steadytext_cache_misses", "result cache misses since start", c.misses as f64),
        (
            "steadytext_cache_memory_entries",
            "entries in the in-memory cache",
            c.memory_entries as f64,
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
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
        if given != Some(token.as_str()) {
            return DaemonError::Unauthorized.into_response();
        }
    }
    next.run(req).await
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
