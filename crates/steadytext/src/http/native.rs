//! The native endpoints the extension calls (`/steadytext/v1/*`), `/health` and `/metrics`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use steadytext_api::metric_names::{CACHE_HITS, CACHE_MEMORY_ENTRIES, CACHE_MISSES};
use steadytext_api::wire::{self, EmbedBody, GenerateBody, RerankBody};

use crate::error::DaemonError;
use crate::http::state::{body, AppState};

/// `POST /steadytext/v1/generate`.
pub async fn generate(
    State(s): State<AppState>,
    b: Result<Json<GenerateBody>, JsonRejection>,
) -> Result<Json<wire::GenerateReply>, DaemonError> {
    Ok(Json(s.service.generate(body(b)?).await?))
}

/// `POST /steadytext/v1/embed`.
pub async fn embed(
    State(s): State<AppState>,
    b: Result<Json<EmbedBody>, JsonRejection>,
) -> Result<Json<wire::EmbedReply>, DaemonError> {
    Ok(Json(s.service.embed(body(b)?).await?))
}

/// `POST /steadytext/v1/rerank`.
pub async fn rerank(
    State(s): State<AppState>,
    b: Result<Json<RerankBody>, JsonRejection>,
) -> Result<Json<wire::RerankReply>, DaemonError> {
    Ok(Json(s.service.rerank(body(b)?).await?))
}

/// `GET /health`: the models, the cache, the version.
pub async fn health(State(s): State<AppState>) -> Response {
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

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(s): State<AppState>) -> Response {
    let c = s.service.cache.stats();
    let text = s.service.metrics.render(&[
        (CACHE_HITS, "result cache hits since start", c.hits as f64),
        (CACHE_MISSES, "result cache misses since start", c.misses as f64),
        (CACHE_MEMORY_ENTRIES, "entries in the in-memory cache", c.memory_entries as f64),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
