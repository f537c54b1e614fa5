//! OpenAI-compatible endpoints (`/v1/models`, `/v1/completions`, `/v1/chat/completions`,
//! `/v1/embeddings`) and a Cohere/Jina-style `/v1/rerank`, translated onto the same
//! [`crate::service::Service`] operations as the native API, so they return the same
//! deterministic results; streamed responses are built in [`crate::http::openai_stream`].

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use steadytext_api::limits::{DEFAULT_MAX_TOKENS, DEFAULT_SEED};
use steadytext_api::wire::{
    ConstraintBody, EmbedBody, GenerateBody, GenerationParams, RerankBody, DEFAULT_RERANK_TASK,
};
use steadytext_core::ChatMessage;

use crate::engine_host::GenerateOptions;
use crate::error::DaemonError;
use crate::http::openai_stream::{stream, Kind, Shape};
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

/// `stream_options` of a streamed request.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the request's `usage` before `[DONE]`. Default: false.
    #[serde(default)]
    pub include_usage: bool,
}

/// Body of `POST /v1/completions` (the fields steadytext honours; the ones it cannot honour
/// are refused when set; others, such as `model` — the daemon serves its loaded model — and
/// sampling settings — decoding is greedy — are ignored).
#[derive(Debug, Deserialize)]
pub struct CompletionBody {
    /// The prompt(s).
    pub prompt: OneOrMany,
    /// Upper bound on generated tokens. Default: 512.
    pub max_tokens: Option<i32>,
    /// Seed. Default: 42.
    pub seed: Option<i32>,
    /// Send the text as server-sent events while it is decoded. Default: false.
    #[serde(default)]
    pub stream: bool,
    /// Options of a streamed response.
    pub stream_options: Option<StreamOptions>,
    /// Completions per prompt: only 1.
    pub n: Option<u32>,
    /// Candidates per prompt: only 1.
    pub best_of: Option<u32>,
    /// Echo the prompt: not supported.
    pub echo: Option<bool>,
    /// Token log-probabilities: not supported.
    pub logprobs: Option<Value>,
    /// Text after the completion: not supported.
    pub suffix: Option<String>,
    /// Stop sequences: not supported.
    pub stop: Option<Value>,
}

impl CompletionBody {
    /// Refuses the set fields the daemon cannot honour, naming them.
    fn refuse_unsupported(&self) -> Result<(), DaemonError> {
        refuse(&[
            ("n > 1", self.n.is_some_and(|n| n > 1)),
            ("best_of > 1", self.best_of.is_some_and(|n| n > 1)),
            ("echo", self.echo == Some(true)),
            ("logprobs", self.logprobs.as_ref().is_some_and(|v| !v.is_null())),
            ("suffix", self.suffix.is_some()),
            ("stop", self.stop.as_ref().is_some_and(|v| !v.is_null())),
        ])
    }
}

/// One message of `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatMessageBody {
    /// `system`, `developer` (read as system), `user` or `assistant`.
    pub role: String,
    /// Text, or content parts of which only `text` parts are supported.
    pub content: Option<MessageContent>,
    /// Tool calls of an assistant message: not supported.
    pub tool_calls: Option<Value>,
}

/// The content of a chat message: a string or a list of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": …}`).
    Parts(Vec<ContentPart>),
}

/// One content part of a chat message.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// The part's type; only `text` is supported.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// `response_format` of a chat request.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// The `json_schema` of a [`ResponseFormat::JsonSchema`].
#[derive(Debug, Deserialize)]
pub struct JsonSchemaFormat {
    /// The JSON Schema the output must satisfy.
    pub schema: Option<Value>,
}

/// Body of `POST /v1/chat/completions` (the fields steadytext honours; the ones it cannot
/// honour are refused when set; others, such as `model` and sampling settings, are ignored as
/// in [`CompletionBody`]).
#[derive(Debug, Deserialize)]
pub struct ChatBody {
    /// The conversation.
    pub messages: Vec<ChatMessageBody>,
    /// Upper bound on generated tokens (the newer name; wins over `max_tokens`). Default: 512.
    pub max_completion_tokens: Option<i32>,
    /// Upper bound on generated tokens. Default: 512.
    pub max_tokens: Option<i32>,
    /// Seed. Default: 42.
    pub seed: Option<i32>,
    /// Free text (default), any JSON object, or JSON of a schema (constrained decoding).
    pub response_format: Option<ResponseFormat>,
    /// Send the reply as server-sent events while it is decoded. Default: false.
    #[serde(default)]
    pub stream: bool,
    /// Options of a streamed response.
    pub stream_options: Option<StreamOptions>,
    /// Choices per request: only 1.
    pub n: Option<u32>,
    /// Tools: not supported.
    pub tools: Option<Value>,
    /// Tool choice: not supported.
    pub tool_choice: Option<Value>,
    /// Functions (deprecated tools): not supported.
    pub functions: Option<Value>,
    /// Token log-probabilities: not supported.
    pub logprobs: Option<bool>,
    /// Stop sequences: not supported.
    pub stop: Option<Value>,
}

impl ChatBody {
    /// Refuses the set fields the daemon cannot honour, naming them.
    fn refuse_unsupported(&self) -> Result<(), DaemonError> {
        let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
        refuse(&[
            ("n > 1", self.n.is_some_and(|n| n > 1)),
            ("tools", set(&self.tools)),
            ("tool_choice", set(&self.tool_choice)),
            ("functions", set(&self.functions)),
            ("logprobs", self.logprobs == Some(true)),
            ("stop", set(&self.stop)),
        ])
    }

    /// The conversation as the engine takes it.
    fn chat_messages(&self) -> Result<Vec<ChatMessage>, DaemonError> {
        if self.messages.is_empty() {
            return Err(DaemonError::BadBody("messages must not be empty".into()));
        }
        self.messages.iter().map(ChatMessageBody::to_chat).collect()
    }

    /// The constraint of `response_format`, if any.
    fn constraint(&self) -> Result<Option<ConstraintBody>, DaemonError> {
        Ok(match &self.response_format {
            None | Some(ResponseFormat::Text) => None,
            Some(ResponseFormat::JsonObject) => {
                Some(ConstraintBody::Json { schema: json!({"type": "object"}) })
            }
            Some(ResponseFormat::JsonSchema { json_schema }) => {
                let schema = json_schema.schema.clone().ok_or_else(|| {
                    DaemonError::BadBody("response_format.json_schema.schema is missing".into())
                })?;
                Some(ConstraintBody::Json { schema })
            }
        })
    }
}

impl ChatMessageBody {
    /// The message as the engine takes it; tool messages, tool calls and non-text content
    /// are refused, naming them.
    fn to_chat(&self) -> Result<ChatMessage, DaemonError> {
        let role = match self.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" | "function" => return Err(DaemonError::Unsupported("tool messages".into())),
            other => return Err(DaemonError::BadBody(format!("unknown message role {other:?}"))),
        };
        if self.tool_calls.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(DaemonError::Unsupported("tool_calls".into()));
        }
        let content = match &self.content {
            None => String::new(),
            Some(MessageContent::Text(t)) => t.clone(),
            Some(MessageContent::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(DaemonError::Unsupported(format!("{kind} content parts")))
                        }
                    }
                }
                text
            }
        };
        Ok(ChatMessage { role: role.to_owned(), content })
    }
}

/// [`DaemonError::Unsupported`] naming every feature whose flag is set, or `Ok`.
fn refuse(features: &[(&str, bool)]) -> Result<(), DaemonError> {
    let asked: Vec<&str> = features.iter().filter(|(_, set)| *set).map(|(f, _)| *f).collect();
    if asked.is_empty() {
        Ok(())
    } else {
        Err(DaemonError::Unsupported(asked.join(", ")))
    }
}

/// The name of the generation model the daemon serves (as `/v1/models` lists it).
fn generation_model(s: &AppState) -> String {
    s.service.engine.generation.as_ref().map(|m| m.name.clone()).unwrap_or_default()
}

/// A generation request of the OpenAI endpoints (always cached: the results are
/// deterministic).
fn generation(prompt: String, max_tokens: Option<i32>, seed: Option<i32>) -> GenerationParams {
    GenerationParams {
        max_tokens: max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        seed: seed.unwrap_or(DEFAULT_SEED),
        ..GenerationParams::new(prompt)
    }
}

/// `POST /v1/completions`: several prompts are decoded together; `stream` sends the text of a
/// single prompt as server-sent events.
pub async fn completions(
    State(s): State<AppState>,
    b: Result<Json<CompletionBody>, JsonRejection>,
) -> Result<Response, DaemonError> {
    let b = body(b)?;
    b.refuse_unsupported()?;
    let prompts = b.prompt.into_vec();
    let shape = Shape::new(Kind::Completion, generation_model(&s), b.max_tokens);
    let body_of = |prompt| GenerateBody {
        generation: generation(prompt, b.max_tokens, b.seed),
        constraint: None,
    };
    if b.stream {
        let [prompt]: [String; 1] = prompts.try_into().map_err(|_| {
            DaemonError::Unsupported("streaming several prompts in one request".into())
        })?;
        let include_usage = b.stream_options.is_some_and(|o| o.include_usage);
        return stream(s.service, body_of(prompt), false, shape, include_usage).await;
    }
    let runs = prompts
        .into_iter()
        .map(|prompt| s.service.complete(body_of(prompt), false, GenerateOptions::default()));
    let completions = futures_util::future::try_join_all(runs).await?;
    Ok(Json(shape.response(&completions)).into_response())
}

/// `POST /v1/chat/completions`: the messages in the model's chat template, completed (as
/// server-sent events with `stream`).
pub async fn chat_completions(
    State(s): State<AppState>,
    b: Result<Json<ChatBody>, JsonRejection>,
) -> Result<Response, DaemonError> {
    let b = body(b)?;
    b.refuse_unsupported()?;
    let messages = b.chat_messages()?;
    let constraint = b.constraint()?;
    let max_tokens = b.max_completion_tokens.or(b.max_tokens);
    let prompt = s.service.chat_prompt(messages).await?;
    let body = GenerateBody { generation: generation(prompt, max_tokens, b.seed), constraint };
    let shape = Shape::new(Kind::Chat, generation_model(&s), max_tokens);
    if b.stream {
        let include_usage = b.stream_options.is_some_and(|o| o.include_usage);
        return stream(s.service, body, true, shape, include_usage).await;
    }
    let completion = s.service.complete(body, true, GenerateOptions::default()).await?;
    Ok(Json(shape.response(std::slice::from_ref(&completion))).into_response())
}

/// `GET /v1/models`: the loaded models (generation, embedding, reranker), by the names
/// `/health` reports.
pub async fn models(State(s): State<AppState>) -> Json<Value> {
    let engine = &s.service.engine;
    let loaded = [Some(&engine.generation), Some(&engine.embedding), engine.rerank.as_ref()];
    let data: Vec<Value> = loaded
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_ref().ok())
        .map(|m| {
            json!({"id": m.name, "object": "model", "created": m.created,
                        "owned_by": "steadytext"})
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
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
