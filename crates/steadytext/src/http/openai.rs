//! OpenAI-compatible endpoints (`/v1/completions`, `/v1/embeddings`) and a Cohere/Jina-style
//! `/v1/rerank`, translated onto the same [`crate::service::Service`] operations as the native
//! API, so they return the same deterministic results.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use steadytext_api::limits::{DEFAULT_MAX_TOKENS, DEFAULT_SEED};
use steadytext_api::wire::{
    EmbedBody, GenerateBody, GenerationParams, RerankBody, DEFAULT_RERANK_TASK,
};

use crate::error::DaemonError;
use crate::http::state::{body, AppState};

/// A string or a list of strings (OpenAI's `prompt` / `input`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One string.
    One(String),
    /// Several strings.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Body of `POST /v1/completions` (the fields steadytext honours; others are ignored).
#[derive(Debug, Deserialize)]
pub struct CompletionBody {
    /// Model name (informational: the daemon serves its loaded model).
    pub model: Option<String>,
    /// The prompt(s).
    pub prompt: OneOrMany,
    /// Upper bound on generated tokens. Default: 512.
    pub max_tokens: Option<i32>,
    /// Seed. Default: 42.
    pub seed: Option<i32>,
}

/// Body of `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsBody {
    /// Model name (informational).
    pub model: Option<String>,
    /// The text(s).
    pub input: OneOrMany,
}

/// Body of `POST /v1/rerank`.
#[derive(Debug, Deserialize)]
pub struct RerankApiBody {
    /// Model name (informational).
    pub model: Option<String>,
    /// The query.
    pub query: String,
    /// The documents.
    pub documents: Vec<String>,
    /// Return only the best `top_n`. Default: all.
    pub top_n: Option<usize>,
    /// Include the document texts in the results. Default: true.
    pub return_documents: Option<bool>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `POST /v1/completions`.
pub async fn completions(
    State(s): State<AppState>,
    b: Result<Json<CompletionBody>, JsonRejection>,
) -> Result<Json<Value>, DaemonError> {
    let b = body(b)?;
    let model = s.service.engine.generation.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let mut choices = Vec::new();
    let mut completion_tokens = 0u32;
    for (index, prompt) in b.prompt.into_vec().into_iter().enumerate() {
        let reply = s
            .service
            .generate(GenerateBody {
                generation: GenerationParams {
                    max_tokens: b.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
                    seed: b.seed.unwrap_or(DEFAULT_SEED),
                    ..GenerationParams::new(prompt)
                },
                constraint: None,
            })
            .await?;
        completion_tokens += reply.tokens;
        choices.push(json!({"text": reply.text, "index": index, "logprobs": null,
                            "finish_reason": "stop"}));
    }
    Ok(Json(json!({
        "id": format!("cmpl-steadytext-{}", now()),
        "object": "text_completion",
        "created": now(),
        "model": b.model.unwrap_or(model),
        "choices": choices,
        "usage": {"completion_tokens": completion_tokens},
    })))
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(s): State<AppState>,
    b: Result<Json<EmbeddingsBody>, JsonRejection>,
) -> Result<Json<Value>, DaemonError> {
    let b = body(b)?;
    let model = s.service.engine.embedding.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let reply = s
        .service
        .embed(EmbedBody { texts: b.input.into_vec(), use_cache: true, seed: DEFAULT_SEED })
        .await?;
    let data: Vec<Value> = reply
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, e)| json!({"object": "embedding", "index": index, "embedding": e}))
        .collect();
    Ok(Json(json!({"object": "list", "data": data, "model": b.model.unwrap_or(model)})))
}

/// `POST /v1/rerank`.
pub async fn rerank(
    State(s): State<AppState>,
    b: Result<Json<RerankApiBody>, JsonRejection>,
) -> Result<Json<Value>, DaemonError> {
    let b = body(b)?;
    let reply = s
        .service
        .rerank(RerankBody {
            query: b.query,
            documents: b.documents.clone(),
            task: DEFAULT_RERANK_TASK.into(),
            seed: DEFAULT_SEED,
            use_cache: true,
        })
        .await?;
    let with_docs = b.return_documents.unwrap_or(true);
    let results: Vec<Value> = reply
        .ranking()
        .into_iter()
        .take(b.top_n.unwrap_or(usize::MAX))
        .map(|i| {
            let mut r = json!({"index": i, "relevance_score": reply.scores[i]});
            if with_docs {
                r["document"] = json!({"text": b.documents[i]});
            }
            r
        })
        .collect();
    Ok(Json(json!({"model": b.model.unwrap_or(reply.model), "method": reply.method,
                   "results": results})))
}
