//! The engine on its own OS thread: async callers send calls over a channel and await a oneshot
//! reply. Generation is continuously batched: a request joins the live decode batch at the next
//! step (short prompts admitted together are prefilled together, a long one alone or a chunk
//! per step) and leaves it (its reply sent at once) the step it ends; up to
//! `max_batch` sequences are live, and when more wait, the highest priority, then the oldest, is
//! admitted first. Embedding and rerank calls run between two decode steps (waiting embeddings
//! grouped into one call, up to a text budget). Batching never changes an output: a sequence
//! decodes byte-identically whenever it joined and whoever its neighbours were (tested in core).
//!
//! This module is the handle and the loading of the models; [`scheduler`] is the engine
//! thread's loop.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;

use steadytext_core::models::ModelDir;
use steadytext_core::registry::{self, ModelChoice, Role};
use steadytext_core::rerank::{ModelReranker, Ranking};
use steadytext_core::{
    Caller, CoreError, Embedder, GenerateRequest, Generation, Generator, ThreadPolicy,
};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use crate::error::DaemonError;
use crate::metrics::Metrics;

mod scheduler;

use scheduler::{panicked, unavailable, Engine};

/// What arrives within this long of the one before belongs together: an engine with nothing to
/// decode waits this long for the next generation before it starts decoding (and for the next
/// embedding before it embeds fewer texts than a batch), and the queue worker that saw one
/// request finish waits this long for the next before it records them and claims again. So
/// the jobs of one claim are prefilled together and decode in step, and the generations that
/// end at one step are completed and replaced by one claim (measured in issue #22's profile
/// without it: one claim of 8 jobs reached the engine as 1 and 7, 2 and 6 or 4 and 4, and each
/// split cost a decode step and a prefill call per cycle). Short beside a decode step (10–40
/// ms), which is what separates results of different steps.
pub(crate) const GATHER_WINDOW: std::time::Duration = std::time::Duration::from_millis(1);

/// Identity of a loaded model: its registry name, file name and content digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Registry name.
    pub name: String,
    /// File name inside the model directory.
    pub file: String,
    /// sha256 of the file (part of every cache key).
    pub digest: String,
    /// When the file was last modified, in Unix seconds (0 when unknown); OpenAI's `created`.
    pub created: u64,
}

/// Settings of the engine thread.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where the model files are.
    pub model_dir: ModelDir,
    /// llama.cpp threads of every model.
    pub threads: ThreadPolicy,
    /// Most generation requests decoded together.
    pub max_batch: usize,
}

type GenerateReply = oneshot::Sender<Result<Generation, DaemonError>>;
type EmbedReply = oneshot::Sender<Result<Vec<Vec<f32>>, DaemonError>>;
type RerankReply = oneshot::Sender<Result<Ranking, DaemonError>>;

/// Receives a generation's output text piece by piece as it is decoded (whole UTF-8
/// characters; the pieces concatenate to the final text); closed when the request ends.
pub type TextSink = tokio_mpsc::UnboundedSender<String>;

/// How one generation request is scheduled and observed.
#[derive(Debug, Default)]
pub struct GenerateOptions {
    /// Admission order when more generations wait than the batch has room for: higher first,
    /// then older first. Queue jobs pass their row's priority; synchronous HTTP calls 0.
    pub priority: i32,
    /// Where to stream the output as it is decoded (for streaming responses); `None` for none.
    pub sink: Option<TextSink>,
}

/// Work on the generation model that is not a generation (rendering a chat template, counting
/// tokens): run on the engine thread between two decode steps, given the model or why it is
/// unavailable.
type GeneratorTask = Box<dyn FnOnce(Result<&Generator, &str>) + Send>;

/// Work on the embedding model that is not an embedding (splitting a text into chunks of its
/// tokens): run on the engine thread between two decode steps, like a [`GeneratorTask`].
type EmbedderTask = Box<dyn FnOnce(Result<&Embedder, &str>) + Send>;

enum EngineCall {
    Generate(GenerationCall),
    WithGenerator(GeneratorTask),
    WithEmbedder(EmbedderTask),
    Embed { texts: Vec<String>, reply: EmbedReply },
    Rerank { query: String, documents: Vec<String>, task: String, reply: RerankReply },
}

impl EngineCall {
    /// Whether the caller stopped waiting (timed out or went away): such jobs are skipped.
    fn abandoned(&self) -> bool {
        match self {
            EngineCall::Generate(job) => job.reply.is_closed(),
            EngineCall::Embed { reply, .. } => reply.is_closed(),
            EngineCall::Rerank { reply, .. } => reply.is_closed(),
            EngineCall::WithGenerator(_) | EngineCall::WithEmbedder(_) => false,
        }
    }

    /// The metrics label of the job's kind.
    fn kind(&self) -> &'static str {
        match self {
            EngineCall::Generate { .. } => "generate",
            EngineCall::Embed { .. } => "embed",
            EngineCall::Rerank { .. } => "rerank",
            EngineCall::WithGenerator(_) => "generator",
            EngineCall::WithEmbedder(_) => "embedder",
        }
    }
}

/// A generation request on its way through the engine: waiting, then live in the decode batch.
struct GenerationCall {
    req: GenerateRequest,
    priority: i32,
    /// Arrival order at the engine thread (older first among equal priorities).
    arrival: u64,
    reply: GenerateReply,
    sink: Option<TextSink>,
}

impl Caller for GenerationCall {
    /// A request whose caller stopped waiting (a worker's timeout or cancel, an HTTP client
    /// gone) is stopped before the next step, and its stream goes to the next request.
    fn wanted(&self) -> bool {
        !self.reply.is_closed()
    }

    fn piece(&mut self, text: &str) {
        if let Some(sink) = &self.sink {
            let _ = sink.send(text.to_owned());
        }
    }
}

/// Handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<EngineCall>,
    /// The generation model, or why it is unavailable.
    pub generation: Result<ModelInfo, String>,
    /// The embedding model, or why it is unavailable.
    pub embedding: Result<ModelInfo, String>,
    /// The reranker model, why it is unavailable, or `None` when none is configured (then
    /// reranking is embedding cosine).
    pub rerank: Option<Result<ModelInfo, String>>,
}

impl EngineHandle {
    /// Starts the engine thread, loads the models on it and returns once they are loaded (a
    /// missing model makes its role unavailable; it does not stop the daemon).
    pub fn start(config: EngineConfig, metrics: Metrics) -> Result<Self, DaemonError> {
        let (tx, rx) = mpsc::channel::<EngineCall>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new().name("steadytext-engine".into()).spawn(move || {
            let threads = config.threads;
            let generator =
                load_role(&config, Role::Generation, |p, _| Generator::load(p, threads))
                    .expect("the mini set has a generation model");
            let embedder = load_role(&config, Role::Embedding, |p, _| Embedder::load(p, threads))
                .expect("the mini set has an embedding model");
            let reranker = load_role(&config, Role::Rerank, |p, c| {
                ModelReranker::load(p, c.display_name(), threads)
            });
            let _ = ready_tx.send((
                info_of(&generator),
                info_of(&embedder),
                reranker.as_ref().map(info_of),
            ));
            let engine = Engine {
                generator: generator.map(|(g, _)| g),
                embedder: embedder.map(|(e, _)| e),
                reranker: reranker.map(|r| r.map(|(r, _)| r)),
                max_batch: config.max_batch.max(1),
                metrics,
            };
            engine.run(rx);
        })?;
        let (generation, embedding, rerank) =
            ready_rx.recv().map_err(|_| DaemonError::EngineStopped)?;
        Ok(Self { tx, generation, embedding, rerank })
    }

    /// Generates one completion (decoded together with concurrent requests). Dropping the
    /// returned future stops the request within one decode step.
    pub async fn generate(
        &self,
        req: GenerateRequest,
        options: GenerateOptions,
    ) -> Result<Generation, DaemonError> {
        let (reply, rx) = oneshot::channel();
        let GenerateOptions { priority, sink } = options;
        let job = GenerationCall { req, priority, arrival: 0, reply, sink };
        self.tx.send(EngineCall::Generate(job)).map_err(|_| DaemonError::EngineStopped)?;
        rx.await.map_err(|_| DaemonError::EngineStopped)?
    }

    /// Runs `task` on the generation model, on the engine thread between two decode steps
    /// (for quick work such as rendering a chat template or counting tokens).
    pub async fn with_generator<T: Send + 'static>(
        &self,
        task: impl FnOnce(&Generator) -> Result<T, CoreError> + Send + 'static,
    ) -> Result<T, DaemonError> {
        let (reply, rx) = oneshot::channel();
        let call: GeneratorTask = Box::new(move |generator| {
            let result = match generator {
                Ok(g) => match std::panic::catch_unwind(AssertUnwindSafe(|| task(g))) {
                    Ok(result) => result.map_err(DaemonError::Engine),
                    Err(_) => Err(panicked()),
                },
                Err(reason) => Err(unavailable("generation", reason)),
            };
            let _ = reply.send(result);
        });
        self.tx.send(EngineCall::WithGenerator(call)).map_err(|_| DaemonError::EngineStopped)?;
        rx.await.map_err(|_| DaemonError::EngineStopped)?
    }

    /// Runs `task` with the embedding model on the engine thread (between two decode steps).
    pub async fn with_embedder<T: Send + 'static>(
        &self,
        task: impl FnOnce(&Embedder) -> Result<T, CoreError> + Send + 'static,
    ) -> Result<T, DaemonError> {
        let (reply, rx) = oneshot::channel();
        let call: EmbedderTask = Box::new(move |embedder| {
            let result = match embedder {
                Ok(e) => match std::panic::catch_unwind(AssertUnwindSafe(|| task(e))) {
                    Ok(result) => result.map_err(DaemonError::Engine),
                    Err(_) => Err(panicked()),
                },
                Err(reason) => Err(unavailable("embedding", reason)),
            };
            let _ = reply.send(result);
        });
        self.tx.send(EngineCall::WithEmbedder(call)).map_err(|_| DaemonError::EngineStopped)?;
        rx.await.map_err(|_| DaemonError::EngineStopped)?
    }

    /// Scores documents against a query with the configured reranker model.
    pub async fn rerank(
        &self,
        query: String,
        documents: Vec<String>,
        task: String,
    ) -> Result<Ranking, DaemonError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(EngineCall::Rerank { query, documents, task, reply })
            .map_err(|_| DaemonError::EngineStopped)?;
        rx.await.map_err(|_| DaemonError::EngineStopped)?
    }

    /// Embeds texts, one unit vector each, in order (batched with concurrent requests).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, DaemonError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(EngineCall::Embed { texts, reply }).map_err(|_| DaemonError::EngineStopped)?;
        rx.await.map_err(|_| DaemonError::EngineStopped)?
    }
}

/// Loads the model chosen for `role` with `load`; `None` when the role has no model configured
/// (only rerank: the service then falls back to embedding cosine, and says so).
fn load_role<T>(
    config: &EngineConfig,
    role: Role,
    load: impl FnOnce(&Path, &ModelChoice) -> Result<T, CoreError>,
) -> Option<Result<(T, ModelInfo), String>> {
    let choice = match registry::choose(role) {
        Ok(Some(choice)) => choice,
        Ok(None) => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let loaded = choice.locate_importing(&config.model_dir).and_then(|path| {
        let model = load(&path, &choice)?;
        let verified = match &choice {
            ModelChoice::Named(e) => e.sha256,
            ModelChoice::File(_) => None,
        };
        Ok((model, model_info(&choice.display_name(), &path, verified)))
    });
    Some(loaded.map_err(|e| e.to_string()))
}

/// The identity of a loaded model, or why it did not load.
fn info_of<T>(loaded: &Result<(T, ModelInfo), String>) -> Result<ModelInfo, String> {
    loaded.as_ref().map(|(_, i)| i.clone()).map_err(Clone::clone)
}

/// The model's identity; the digest is the registry's sha256 (verified when it was fetched)
/// when there is one, else the file's sha256 computed now.
fn model_info(name: &str, path: &Path, verified_sha256: Option<&str>) -> ModelInfo {
    let digest = match verified_sha256 {
        Some(d) => d.to_owned(),
        None => {
            steadytext_core::models::sha256_file(path).unwrap_or_else(|e| format!("unreadable:{e}"))
        }
    };
    ModelInfo {
        name: name.to_owned(),
        file: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        digest,
        created: std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs()),
    }
}
