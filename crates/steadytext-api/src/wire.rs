//! Request and response bodies of the daemon's native HTTP API (`/steadytext/v1/*`), used by
//! the extension's synchronous SQL functions and by the queue worker. Field names are the SQL
//! functions' argument names; a queued request becomes one of these bodies through
//! [`crate::queue_request::QueuedRequest::into_call`].

use serde::{Deserialize, Serialize};

use crate::function::Function;
use crate::limits::{DEFAULT_MAX_TOKENS, DEFAULT_SEED};
use crate::validate::{self, InputError};

/// Path of the native generation endpoint.
pub const GENERATE_PATH: &str = "/steadytext/v1/generate";
/// Path of the native embedding endpoint.
pub const EMBED_PATH: &str = "/steadytext/v1/embed";
/// Path of the native rerank endpoint.
pub const RERANK_PATH: &str = "/steadytext/v1/rerank";
/// Path of the health endpoint.
pub const HEALTH_PATH: &str = "/health";

/// Default instruction of the rerank functions (the SQL default of their `task` argument).
pub const DEFAULT_RERANK_TASK: &str =
    "Given a web search query, retrieve relevant passages that answer the query";

pub(crate) fn default_max_tokens() -> i32 {
    DEFAULT_MAX_TOKENS
}
pub(crate) fn default_seed() -> i32 {
    DEFAULT_SEED
}
pub(crate) fn default_true() -> bool {
    true
}
fn default_task() -> String {
    DEFAULT_RERANK_TASK.to_owned()
}

/// A constraint on generated text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConstraintBody {
    /// Bare JSON valid against a JSON Schema.
    Json {
        /// The JSON Schema.
        schema: serde_json::Value,
    },
    /// Text fully matching a regular expression.
    Regex {
        /// The regular expression.
        pattern: String,
    },
    /// Exactly one of the choices.
    Choice {
        /// The allowed outputs.
        choices: Vec<String>,
    },
}

impl ConstraintBody {
    /// The SQL function this constraint belongs to (`generate_json`, …).
    pub fn function(&self) -> Function {
        match self {
            ConstraintBody::Json { .. } => Function::GenerateJson,
            ConstraintBody::Regex { .. } => Function::GenerateRegex,
            ConstraintBody::Choice { .. } => Function::GenerateChoice,
        }
    }

    /// Checks the constraint's arguments with the shared validation.
    pub fn validate(&self) -> Result<(), InputError> {
        match self {
            ConstraintBody::Json { schema } => validate::check_schema(schema),
            ConstraintBody::Regex { pattern } => validate::check_pattern(pattern),
            ConstraintBody::Choice { choices } => validate::check_choices(choices),
        }
    }
}

/// The arguments every generation shares, under their SQL names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// The prompt, completed as is.
    pub prompt: String,
    /// Upper bound on generated tokens (1–4096). Default: 512.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: i32,
    /// Whether a cached result may be returned (and a new one stored). Default: true.
    #[serde(default = "default_true")]
    pub use_cache: bool,
    /// Seed. Default: 42.
    #[serde(default = "default_seed")]
    pub seed: i32,
}

impl GenerationParams {
    /// These arguments with the defaults of every other one.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            max_tokens: DEFAULT_MAX_TOKENS,
            use_cache: true,
            seed: DEFAULT_SEED,
        }
    }
}

/// Body of `POST /steadytext/v1/generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateBody {
    /// Prompt, budget, cache use and seed.
    #[serde(flatten)]
    pub generation: GenerationParams,
    /// Optional output constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<ConstraintBody>,
}

impl GenerateBody {
    /// The SQL function this generation is (`generate`, or its constraint's).
    pub fn function(&self) -> Function {
        self.constraint.as_ref().map_or(Function::Generate, ConstraintBody::function)
    }

    /// Checks every argument with the shared validation; returns `max_tokens` as unsigned.
    pub fn validate(&self) -> Result<u32, InputError> {
        validate::check_text("prompt", &self.generation.prompt)?;
        let max_tokens = validate::check_max_tokens_arg(self.generation.max_tokens)?;
        if let Some(c) = &self.constraint {
            c.validate()?;
        }
        Ok(max_tokens)
    }
}

/// Reply of `POST /steadytext/v1/generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateReply {
    /// The generated text.
    pub text: String,
    /// Tokens generated (0 when served from the cache).
    pub tokens: u32,
    /// Whether the text came from the cache.
    pub cached: bool,
}

/// Body of `POST /steadytext/v1/embed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedBody {
    /// The texts to embed, one vector each, in order.
    pub texts: Vec<String>,
    /// Whether cached vectors may be returned. Default: true.
    #[serde(default = "default_true")]
    pub use_cache: bool,
    /// Seed (part of the request identity). Default: 42.
    #[serde(default = "default_seed")]
    pub seed: i32,
}

impl EmbedBody {
    /// Checks every argument with the shared validation.
    pub fn validate(&self) -> Result<(), InputError> {
        match self.texts.as_slice() {
            [one] => validate::check_text("text_input", one),
            many => validate::check_texts("texts", many, false),
        }
    }
}

/// Reply of `POST /steadytext/v1/embed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedReply {
    /// One unit-length vector per text, in order.
    pub embeddings: Vec<Vec<f32>>,
    /// Per text, whether its vector came from the cache.
    pub cached: Vec<bool>,
}

/// Body of `POST /steadytext/v1/rerank`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankBody {
    /// The query.
    pub query: String,
    /// The documents to score against the query.
    pub documents: Vec<String>,
    /// Instruction for instruction-following rerankers. Default: [`DEFAULT_RERANK_TASK`].
    #[serde(default = "default_task")]
    pub task: String,
    /// Seed. Default: 42.
    #[serde(default = "default_seed")]
    pub seed: i32,
    /// Whether a cached result may be returned. Default: true.
    #[serde(default = "default_true")]
    pub use_cache: bool,
}

impl RerankBody {
    /// Checks every argument with the shared validation.
    pub fn validate(&self) -> Result<(), InputError> {
        validate::check_rerank(&self.query, &self.documents)
    }
}

/// Reply of `POST /steadytext/v1/rerank`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankReply {
    /// How the scores were computed: `cross-encoder`, `qwen3-reranker`, or `embedding-cosine`
    /// (the fallback when no reranker model is installed).
    pub method: String,
    /// File name of the model that scored.
    pub model: String,
    /// One score per document, in the order of the request.
    pub scores: Vec<f64>,
    /// Whether the scores came from the cache.
    pub cached: bool,
}

impl RerankReply {
    /// Document indices ordered by score, highest first; equal scores keep request order.
    pub fn ranking(&self) -> Vec<usize> {
        rank_order(&self.scores)
    }

    /// The result text stored for an asynchronous rerank: a JSON object with the method, the
    /// model, and the documents with their scores, highest first.
    pub fn result_json(&self, documents: &[String]) -> String {
        let ranked: Vec<serde_json::Value> = self
            .ranking()
            .into_iter()
            .map(|i| serde_json::json!({"document": documents[i], "score": self.scores[i]}))
            .collect();
        serde_json::json!({"method": self.method, "model": self.model, "results": ranked})
            .to_string()
    }
}

/// Indices of `scores` ordered by score, highest first; equal scores keep their input order.
/// The one ranking rule of every rerank path (engine, service, SQL).
pub fn rank_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// Machine-readable error class of a failed call; the extension maps it to a SQLSTATE and the
/// daemon to an HTTP status, each in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// An argument outside its documented range or shape.
    InvalidParameter,
    /// A regular expression that does not parse.
    InvalidRegex,
    /// A size limit (context window, batch size) was exceeded.
    LimitExceeded,
    /// Constrained generation did not finish within `max_tokens`.
    Unfinished,
    /// The model the call needs is not installed or failed to load.
    ModelUnavailable,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// No such endpoint.
    NotFound,
    /// The daemon is shutting down or its engine stopped.
    Unavailable,
    /// Anything else (a bug or an engine failure).
    Internal,
}

/// Body of every error reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The error.
    pub error: ErrorInfo,
}

/// The error inside an [`ErrorReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Its class.
    pub code: ErrorCode,
    /// A lower-case, human-readable message.
    pub message: String,
}

impl From<&InputError> for ErrorCode {
    fn from(e: &InputError) -> Self {
        match e {
            InputError::Regex(_) => ErrorCode::InvalidRegex,
            InputError::TooManyElements { .. } => ErrorCode::LimitExceeded,
            _ => ErrorCode::InvalidParameter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queue_parameters_read_as_bodies() {
        let b: GenerateBody =
            serde_json::from_value(json!({"prompt": "hi", "max_tokens": 7, "use_cache": false}))
                .unwrap();
        let g = &b.generation;
        assert_eq!((g.max_tokens, g.seed, g.use_cache, &b.constraint), (7, 42, false, &None));
        assert_eq!(b.function(), Function::Generate);
        let b: RerankBody =
            serde_json::from_value(json!({"query": "q", "documents": ["a"]})).unwrap();
        assert_eq!(b.task, DEFAULT_RERANK_TASK);
        let c: ConstraintBody =
            serde_json::from_value(json!({"kind": "choice", "choices": ["a", "b"]})).unwrap();
        assert_eq!(c.function(), Function::GenerateChoice);
    }

    #[test]
    fn validation_is_shared() {
        let b = GenerateBody {
            generation: GenerationParams { max_tokens: 0, ..GenerationParams::new("x") },
            constraint: None,
        };
        assert_eq!(b.validate().unwrap_err().to_string(), "max_tokens must be positive, got 0");
        let bad = ConstraintBody::Regex { pattern: "(".into() };
        assert_eq!(ErrorCode::from(&bad.validate().unwrap_err()), ErrorCode::InvalidRegex);
    }

    #[test]
    fn ranking_is_by_score_then_input_order() {
        let r = RerankReply {
            method: "embedding-cosine".into(),
            model: "m".into(),
            scores: vec![0.1, 0.9, 0.5, 0.9],
            cached: false,
        };
        assert_eq!(r.ranking(), vec![1, 3, 2, 0]);
        let docs: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let v: serde_json::Value = serde_json::from_str(&r.result_json(&docs)).unwrap();
        assert_eq!(v["results"][0]["document"], "b");
        assert_eq!(v["method"], "embedding-cosine");
    }
}
