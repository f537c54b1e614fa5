//! The engine on its own OS thread: async callers send calls over a channel and await a oneshot
//! reply. Generation is continuously batched: a request is prefilled on its own, joins the live
//! decode batch at the next step and leaves it (its reply sent at once) the step it ends; up to
//! `max_batch` sequences are live, and when more wait, the highest priority, then the oldest, is
//! admitted first. Embedding and rerank calls run between two decode steps (waiting embeddings
//! grouped into one call, up to a text budget). Batching never changes an output: a sequence
//! decodes byte-identically whenever it joined and whoever its neighbours were (tested in core).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use steadytext_core::embed::MAX_TEXTS_PER_BATCH;

use steadytext_core::models::ModelDir;
use steadytext_core::registry::{self, ModelChoice, Role};
use steadytext_core::rerank::{ModelReranker, Ranking};
use steadytext_core::{
    Caller, CoreError, DecodeBatch, Embedder, GenerateRequest, Generation, Generator, ThreadPolicy,
};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use crate::error::DaemonError;
use crate::metrics::Metrics;

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

enum EngineCall {
    Generate(GenerationCall),
    WithGenerator(GeneratorTask),
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
            EngineCall::WithGenerator(_) => false,
        }
    }

    /// The metrics label of the job's kind.
    fn kind(&self) -> &'static str {
        match self {
            EngineCall::Generate { .. } => "generate",
            EngineCall::Embed { .. } => "embed",
            EngineCall::Rerank { .. } => "rerank",
            EngineCall::WithGenerator(_) => "generator",
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

/// State owned by the engine thread.
struct Engine {
    generator: Result<Generator, String>,
    embedder: Result<Embedder, String>,
    reranker: Option<Result<ModelReranker, String>>,
    max_batch: usize,
    metrics: Metrics,
}

impl Engine {
    /// The engine loop: take what arrived (blocking only when there is nothing to do), admit
    /// waiting generations while the batch has room, run waiting embedding and rerank calls,
    /// decode one step, answer the generations that ended; repeat.
    fn run(self, rx: mpsc::Receiver<EngineCall>) {
        let mut waiting: Vec<GenerationCall> = Vec::new();
        let mut others: VecDeque<EngineCall> = VecDeque::new();
        let mut arrivals = 0u64;
        let mut decode: Option<DecodeBatch<'_, GenerationCall>> = None;
        loop {
            let live = decode.as_ref().map_or(0, DecodeBatch::len);
            if live == 0 && waiting.is_empty() && others.is_empty() {
                match rx.recv() {
                    Ok(job) => self.arrive(job, &mut arrivals, &mut waiting, &mut others),
                    Err(_) => return, // every handle dropped
                }
            }
            for job in rx.try_iter() {
                self.arrive(job, &mut arrivals, &mut waiting, &mut others);
            }
            waiting.retain(|j| self.keep_waiting(&j.reply, "generate"));
            others.retain(|j| {
                let abandoned = j.abandoned();
                if abandoned {
                    self.metrics.record_abandoned(j.kind(), 1);
                }
                !abandoned
            });
            if let Some(batch) = decode.as_mut() {
                // abandoned sequences leave before admission, so their streams are reused now
                let released = batch.release();
                self.answer(released);
            }
            if !waiting.is_empty() {
                self.admit(&mut decode, &mut waiting);
            }
            self.run_others(&mut others);
            if let Some(batch) = decode.as_mut().filter(|d| !d.is_empty()) {
                if !self.step(batch) {
                    decode = None; // a panic: start over with a fresh context
                }
            }
        }
    }

    /// Files a job that arrived: a generation waits for admission (or fails at once without a
    /// generation model), anything else queues for the next pause between steps.
    fn arrive(
        &self,
        job: EngineCall,
        arrivals: &mut u64,
        waiting: &mut Vec<GenerationCall>,
        others: &mut VecDeque<EngineCall>,
    ) {
        match job {
            EngineCall::Generate(mut job) => {
                if let Err(reason) = &self.generator {
                    let _ = job.reply.send(Err(unavailable("generation", reason)));
                    return;
                }
                job.arrival = *arrivals;
                *arrivals += 1;
                waiting.push(job);
            }
            other => others.push_back(other),
        }
    }

    /// Whether a waiting request's caller still waits; counts it as abandoned otherwise.
    fn keep_waiting<T>(&self, reply: &oneshot::Sender<T>, kind: &str) -> bool {
        let abandoned = reply.is_closed();
        if abandoned {
            self.metrics.record_abandoned(kind, 1);
        }
        !abandoned
    }

    /// Prefills waiting generations into the decode batch while it has room: the highest
    /// priority first, then the oldest. Creates the batch (one long-lived context) on first
    /// use.
    fn admit<'g>(
        &'g self,
        decode: &mut Option<DecodeBatch<'g, GenerationCall>>,
        waiting: &mut Vec<GenerationCall>,
    ) {
        let Ok(generator) = &self.generator else { return };
        if decode.is_none() {
            match generator.decode_batch(self.max_batch) {
                Ok(batch) => *decode = Some(batch),
                Err(e) => {
                    let msg = e.to_string();
                    for job in waiting.drain(..) {
                        let _ = job
                            .reply
                            .send(Err(DaemonError::Engine(CoreError::Context(msg.clone()))));
                    }
                    return;
                }
            }
        }
        let batch = decode.as_mut().expect("created above");
        while !batch.is_full() && !waiting.is_empty() {
            let next = (0..waiting.len())
                .max_by_key(|&i| (waiting[i].priority, std::cmp::Reverse(waiting[i].arrival)))
                .expect("non-empty");
            let job = waiting.swap_remove(next);
            let req = job.req.clone();
            let tokens = batch.tokens();
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| batch.admit(&req, job)));
            self.metrics.record_admission(batch.tokens() - tokens, started.elapsed());
            match outcome {
                Ok(finished) => self.answer(finished),
                Err(_) => {
                    // the job went into the panicking call; its reply was dropped with it
                    self.fail_all(batch);
                    *decode = None;
                    return;
                }
            }
        }
    }

    /// Decodes one step and answers the generations that ended; false after a panic (every
    /// live request then failed, and the batch must not be used again).
    fn step(&self, batch: &mut DecodeBatch<'_, GenerationCall>) -> bool {
        let (live, tokens) = (batch.len(), batch.tokens());
        let started = Instant::now();
        match std::panic::catch_unwind(AssertUnwindSafe(|| batch.step())) {
            Ok(finished) => {
                self.metrics.record_step(live, batch.tokens() - tokens, started.elapsed());
                self.answer(finished);
                true
            }
            Err(_) => {
                self.fail_all(batch);
                false
            }
        }
    }

    /// Sends each ended generation its result.
    fn answer(
        &self,
        finished: impl IntoIterator<Item = (GenerationCall, Result<Generation, CoreError>)>,
    ) {
        for (job, result) in finished {
            if matches!(result, Err(CoreError::Abandoned)) {
                self.metrics.record_abandoned("generate", 1);
            }
            let _ = job.reply.send(result.map_err(DaemonError::Engine));
        }
    }

    /// Fails every live generation of a batch whose engine call panicked.
    fn fail_all(&self, batch: &mut DecodeBatch<'_, GenerationCall>) {
        let callers =
            std::panic::catch_unwind(AssertUnwindSafe(|| batch.drain())).unwrap_or_default();
        for job in callers {
            let _ = job.reply.send(Err(panicked()));
        }
    }

    /// Runs the waiting embedding and rerank calls, in arrival order; consecutive embeddings
    /// (up to [`MAX_TEXTS_PER_BATCH`] texts) share one engine call.
    fn run_others(&self, others: &mut VecDeque<EngineCall>) {
        while let Some(first) = others.pop_front() {
            match first {
                EngineCall::Embed { texts, reply } => {
                    let mut budget = texts.len();
                    let mut group = vec![(texts, reply)];
                    let mut rest = VecDeque::new();
                    while let Some(job) = others.pop_front() {
                        match job {
                            EngineCall::Embed { texts, reply }
                                if budget + texts.len() <= MAX_TEXTS_PER_BATCH =>
                            {
                                budget += texts.len();
                                group.push((texts, reply))
                            }
                            other => rest.push_back(other),
                        }
                    }
                    *others = rest;
                    self.run_embed(group);
                }
                EngineCall::Rerank { query, documents, task, reply } => {
                    let _ = reply.send(self.run_rerank(&query, &documents, &task));
                }
                EngineCall::WithGenerator(task) => {
                    task(self.generator.as_ref().map_err(String::as_str));
                }
                EngineCall::Generate(_) => unreachable!("generations wait in their own list"),
            }
        }
    }

    fn run_embed(&self, group: Vec<(Vec<String>, EmbedReply)>) {
        let embedder = match &self.embedder {
            Ok(e) => e,
            Err(reason) => {
                for (_, reply) in group {
                    let _ = reply.send(Err(unavailable("embedding", reason)));
                }
                return;
            }
        };
        let texts: Vec<&str> =
            group.iter().flat_map(|(t, _)| t.iter().map(String::as_str)).collect();
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| embedder.embed_batch(&texts)));
        self.metrics.record_embedding(texts.len(), started.elapsed());
        match outcome {
            Ok(Ok(mut vectors)) => {
                for (texts, reply) in group {
                    let rest = vectors.split_off(texts.len());
                    let _ = reply.send(Ok(std::mem::replace(&mut vectors, rest)));
                }
            }
            // one bad text fails the whole engine call: retry each request on its own so
            // that only the offending request gets the error
            Ok(Err(_)) if group.len() > 1 => {
                for (texts, reply) in group {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let _ = reply.send(embedder.embed_batch(&refs).map_err(DaemonError::Engine));
                }
            }
            Ok(Err(e)) => {
                let (_, reply) = group.into_iter().next().expect("a non-empty group");
                let _ = reply.send(Err(DaemonError::Engine(e)));
            }
            Err(_) => {
                for (_, reply) in group {
                    let _ = reply.send(Err(panicked()));
                }
            }
        }
    }
}

impl Engine {
    fn run_rerank(
        &self,
        query: &str,
        documents: &[String],
        task: &str,
    ) -> Result<Ranking, DaemonError> {
        let reranker = match &self.reranker {
            Some(Ok(r)) => r,
            Some(Err(reason)) => return Err(unavailable("rerank", reason)),
            None => return Err(unavailable("rerank", "no reranker model is configured")),
        };
        let docs: Vec<&str> = documents.iter().map(String::as_str).collect();
        let started = Instant::now();
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| reranker.rerank(query, &docs, task)));
        self.metrics.record_rerank(docs.len(), started.elapsed());
        outcome.map_err(|_| panicked())?.map_err(DaemonError::Engine)
    }
}

fn unavailable(role: &'static str, reason: &str) -> DaemonError {
    DaemonError::ModelUnavailable { role, reason: reason.to_owned() }
}

fn panicked() -> DaemonError {
    DaemonError::Engine(CoreError::Decode("the engine panicked on this request".into()))
}
