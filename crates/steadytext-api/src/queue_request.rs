//! The typed payload of a queued request: which SQL function it is for ([`Function`], stored in
//! `steadytext_queue.function_name`) and its arguments under their SQL names
//! ([`QueuedRequest`], stored in `steadytext_queue.parameters`). The extension writes it, the
//! worker reads it back, and [`QueuedRequest::into_call`] turns it into the same request body a
//! synchronous call sends, so both paths compute the same result.

use serde::{Deserialize, Serialize};

use crate::function::Function;
use crate::limits::{DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_TOKENS};
use crate::validate::{self, InputError};
use crate::wire::{
    default_seed, default_true, ConstraintBody, EmbedBody, GenerateBody, GenerationParams,
    RerankBody,
};

/// Arguments of `steadytext_embed_async`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedParams {
    /// The text to embed.
    pub text_input: String,
    /// Whether a cached vector may be returned. Default: true.
    #[serde(default = "default_true")]
    pub use_cache: bool,
    /// Seed (part of the request identity). Default: 42.
    #[serde(default = "default_seed")]
    pub seed: i32,
}

/// Arguments of `steadytext_generate_json_async`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonParams {
    /// The generation arguments.
    #[serde(flatten)]
    pub generation: GenerationParams,
    /// The JSON Schema the output must validate against.
    pub schema: serde_json::Value,
}

/// Arguments of `steadytext_generate_regex_async`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegexParams {
    /// The generation arguments.
    #[serde(flatten)]
    pub generation: GenerationParams,
    /// The regular expression the whole output must match.
    pub pattern: String,
}

/// Arguments of `steadytext_generate_choice_async`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceParams {
    /// The generation arguments.
    #[serde(flatten)]
    pub generation: GenerationParams,
    /// The allowed outputs.
    pub choices: Vec<String>,
}

/// Arguments of a chunked embedding (a derivation of kind `embed_chunks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedChunksParams {
    /// The text to split and embed.
    pub text_input: String,
    /// Most tokens of the embedding model per chunk. Default: 256.
    #[serde(default = "default_chunk_tokens")]
    pub chunk_tokens: i32,
    /// Tokens consecutive chunks of a paragraph may share. Default: 32.
    #[serde(default = "default_chunk_overlap")]
    pub chunk_overlap: i32,
    /// Whether cached vectors may be returned (per chunk). Default: true.
    #[serde(default = "default_true")]
    pub use_cache: bool,
    /// Seed (part of each chunk's request identity). Default: 42.
    #[serde(default = "default_seed")]
    pub seed: i32,
}

impl EmbedChunksParams {
    /// Checks the text and the chunking.
    pub fn validate(&self) -> Result<(), InputError> {
        validate::check_text("text_input", &self.text_input)?;
        validate::check_chunking(self.chunk_tokens, self.chunk_overlap)
    }
}

fn default_chunk_tokens() -> i32 {
    DEFAULT_CHUNK_TOKENS
}

fn default_chunk_overlap() -> i32 {
    DEFAULT_CHUNK_OVERLAP
}

/// One chunk of a chunked embedding's result: its text and its vector in pgvector's text form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkResult {
    /// The chunk, a substring of the input.
    pub text: String,
    /// Its embedding as `[x,y,…]` (see [`crate::vector_text`]).
    pub embedding: String,
}

/// A queued request: the function (the `function_name` column) with its arguments (the
/// `parameters` column, a JSON object under the SQL argument names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "function_name", content = "parameters", rename_all = "snake_case")]
pub enum QueuedRequest {
    /// `steadytext_generate_async` (and each prompt of `steadytext_generate_batch_async`).
    Generate(GenerationParams),
    /// `steadytext_embed_async` (and each text of `steadytext_embed_batch_async`).
    Embed(EmbedParams),
    /// `steadytext_generate_json_async`.
    GenerateJson(JsonParams),
    /// `steadytext_generate_regex_async`.
    GenerateRegex(RegexParams),
    /// `steadytext_generate_choice_async`.
    GenerateChoice(ChoiceParams),
    /// `steadytext_rerank_async`.
    Rerank(RerankBody),
    /// A derivation's chunked embedding.
    EmbedChunks(EmbedChunksParams),
}

/// Why a queue row could not be read as a [`QueuedRequest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// `function_name` is none of [`Function::ALL`].
    #[error("unknown function_name {0:?}")]
    UnknownFunction(String),
    /// `parameters` do not fit the function's arguments.
    #[error("parameters of a {function} request: {reason}")]
    Parameters {
        /// The row's function.
        function: Function,
        /// What serde reported.
        reason: String,
    },
}

/// What a queued request asks the daemon's service for: the body of one synchronous call.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceCall {
    /// A generation, free or constrained.
    Generate(GenerateBody),
    /// An embedding of one text.
    Embed(EmbedBody),
    /// A reranking.
    Rerank(RerankBody),
    /// A text to split into chunks, each embedded; the result is a JSON array of
    /// [`ChunkResult`].
    EmbedChunks(EmbedChunksParams),
}

impl QueuedRequest {
    /// The function this request is for.
    pub fn function(&self) -> Function {
        match self {
            QueuedRequest::Generate(_) => Function::Generate,
            QueuedRequest::Embed(_) => Function::Embed,
            QueuedRequest::GenerateJson(_) => Function::GenerateJson,
            QueuedRequest::GenerateRegex(_) => Function::GenerateRegex,
            QueuedRequest::GenerateChoice(_) => Function::GenerateChoice,
            QueuedRequest::Rerank(_) => Function::Rerank,
            QueuedRequest::EmbedChunks(_) => Function::EmbedChunks,
        }
    }

    /// The `parameters` column: the arguments under their SQL names.
    pub fn parameters(&self) -> serde_json::Value {
        let mut tagged = serde_json::to_value(self).expect("queued requests serialise");
        tagged["parameters"].take()
    }

    /// Reads a queue row back from its `function_name` and `parameters` columns. Rows written
    /// before `seed` was stored for embeddings read with the default seed, as they ran then.
    pub fn from_row(
        function_name: &str,
        parameters: serde_json::Value,
    ) -> Result<Self, PayloadError> {
        let function = Function::from_sql_name(function_name)
            .ok_or_else(|| PayloadError::UnknownFunction(function_name.to_owned()))?;
        let tagged = serde_json::json!({"function_name": function_name, "parameters": parameters});
        serde_json::from_value(tagged)
            .map_err(|e| PayloadError::Parameters { function, reason: e.to_string() })
    }

    /// The synchronous call that computes this request's result.
    pub fn into_call(self) -> ServiceCall {
        match self {
            QueuedRequest::Generate(generation) => {
                ServiceCall::Generate(GenerateBody { generation, constraint: None })
            }
            QueuedRequest::GenerateJson(p) => ServiceCall::Generate(GenerateBody {
                generation: p.generation,
                constraint: Some(ConstraintBody::Json { schema: p.schema }),
            }),
            QueuedRequest::GenerateRegex(p) => ServiceCall::Generate(GenerateBody {
                generation: p.generation,
                constraint: Some(ConstraintBody::Regex { pattern: p.pattern }),
            }),
            QueuedRequest::GenerateChoice(p) => ServiceCall::Generate(GenerateBody {
                generation: p.generation,
                constraint: Some(ConstraintBody::Choice { choices: p.choices }),
            }),
            QueuedRequest::Embed(e) => ServiceCall::Embed(EmbedBody {
                texts: vec![e.text_input],
                use_cache: e.use_cache,
                seed: e.seed,
            }),
            QueuedRequest::Rerank(r) => ServiceCall::Rerank(r),
            QueuedRequest::EmbedChunks(c) => ServiceCall::EmbedChunks(c),
        }
    }

    /// Checks every argument with the shared validation (the extension does before enqueueing;
    /// the daemon does again on receipt).
    pub fn validate(&self) -> Result<(), InputError> {
        match self.clone().into_call() {
            ServiceCall::Generate(b) => b.validate().map(|_| ()),
            ServiceCall::Embed(b) => b.validate(),
            ServiceCall::Rerank(b) => b.validate(),
            ServiceCall::EmbedChunks(c) => c.validate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The CHECK constraint of `steadytext_queue.function_name` (as 0.2.0 redefines it) lists
    /// exactly [`Function::ALL`].
    #[test]
    fn functions_match_the_queue_check_list() {
        let sql = include_str!("../../../extension/sql/v0.2.0/derivations.sql");
        let start = sql
            .find("ADD CONSTRAINT steadytext_queue_function_name_check CHECK (function_name IN (")
            .unwrap();
        let list = &sql[start..];
        let list = &list[list.find("IN (").unwrap() + 4..list.find("))").unwrap()];
        let names: Vec<&str> = list.split(',').map(|s| s.trim().trim_matches('\'')).collect();
        let ours: Vec<&str> = Function::ALL.iter().map(|f| f.sql_name()).collect();
        assert_eq!(names, ours);
        for f in Function::ALL {
            assert_eq!(Function::from_sql_name(f.sql_name()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), json!(f.sql_name()));
        }
        assert_eq!(Function::from_sql_name("summarize"), None);
    }

    #[test]
    fn parameters_are_the_sql_argument_names() {
        let generation =
            GenerationParams { prompt: "p".into(), max_tokens: 7, use_cache: false, seed: 3 };
        let json_request = QueuedRequest::GenerateJson(JsonParams {
            generation: generation.clone(),
            schema: json!({"type": "integer"}),
        });
        assert_eq!(json_request.function().sql_name(), "generate_json");
        assert_eq!(
            json_request.parameters(),
            json!({"prompt": "p", "max_tokens": 7, "use_cache": false, "seed": 3,
                   "schema": {"type": "integer"}})
        );
        let embed =
            QueuedRequest::Embed(EmbedParams { text_input: "t".into(), use_cache: true, seed: 42 });
        assert_eq!(embed.parameters(), json!({"text_input": "t", "use_cache": true, "seed": 42}));
        for request in [json_request, embed] {
            let back = QueuedRequest::from_row(request.function().sql_name(), request.parameters());
            assert_eq!(back.unwrap(), request);
        }
    }

    #[test]
    fn rows_in_the_earlier_shape_read_with_the_defaults() {
        // embeddings were queued without a seed; rerank rows may omit the task
        let embed =
            QueuedRequest::from_row("embed", json!({"text_input": "t", "use_cache": false}));
        let ServiceCall::Embed(body) = embed.unwrap().into_call() else { panic!("an embed call") };
        assert_eq!((body.texts, body.use_cache, body.seed), (vec!["t".to_string()], false, 42));
        let rerank = QueuedRequest::from_row("rerank", json!({"query": "q", "documents": ["d"]}));
        let ServiceCall::Rerank(body) = rerank.unwrap().into_call() else { panic!("a rerank") };
        assert_eq!(body.task, crate::wire::DEFAULT_RERANK_TASK);
        let choice = QueuedRequest::from_row(
            "generate_choice",
            json!({"prompt": "p", "choices": ["a", "b"], "max_tokens": 4}),
        );
        let ServiceCall::Generate(body) = choice.unwrap().into_call() else { panic!("generate") };
        assert_eq!(
            body.constraint,
            Some(ConstraintBody::Choice { choices: vec!["a".into(), "b".into()] })
        );
        let g = body.generation;
        assert_eq!((g.max_tokens, g.seed, g.use_cache), (4, 42, true));
    }

    #[test]
    fn bad_rows_are_typed_errors() {
        assert_eq!(
            QueuedRequest::from_row("summarize", json!({})).unwrap_err().to_string(),
            "unknown function_name \"summarize\""
        );
        let err = QueuedRequest::from_row("generate_regex", json!({"prompt": "p"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameters of a generate_regex request: missing field `pattern`"
        );
        let err = QueuedRequest::from_row("embed", json!({"text_input": 5})).unwrap_err();
        assert!(matches!(err, PayloadError::Parameters { function: Function::Embed, .. }), "{err}");
    }
}
