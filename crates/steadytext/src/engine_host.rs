//! The engine on its own OS thread: async callers send jobs over a channel and await a oneshot
//! reply; the thread batches whatever is waiting (generation up to `max_batch` sequences,
//! embeddings up to a text budget) into one engine call. Batching never changes an output: the
//! engine's batches are byte-identical to running each request alone (tested in core).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use steadytext_core::embed::MAX_TEXTS_PER_BATCH;

use steadytext_core::models::ModelDir;
use steadytext_core::registry::{self, ModelChoice, Role};
use steadytext_core::rerank::{ModelReranker, Ranking};
use steadytext_core::{CoreError, Embedder, GenerateRequest, Generation, Generator};
use tokio::sync::oneshot;

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
}

/// Settings of the engine thread.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where the model files are.
    pub model_dir: ModelDir,
    /// llama.cpp threads.
    pub threads: usize,
    /// Most generation requests decoded together.
    pub max_batch: usize,
}

type GenerateReply = oneshot::Sender<Result<Generation, DaemonError>>;
type EmbedReply = oneshot::Sender<Result<Vec<Vec<f32>>, DaemonError>>;
type RerankReply = oneshot::Sender<Result<Ranking, DaemonError>>;

enum Job {
    Generate { req: GenerateRequest, reply: GenerateReply },
    Embed { texts: Vec<String>, reply: EmbedReply },
    Rerank { query: String, documents: Vec<String>, task: String, reply: RerankReply },
}

impl Job {
    /// Whether the caller stopped waiting (timed out or went away): such jobs are skipped.
    fn abandoned(&self) -> bool {
        match self {
            Job::Generate { reply, .. } => reply.is_closed(),
            Job::Embed { reply, .. } => reply.is_closed(),
            Job::Rerank { reply, .. } => reply.is_closed(),
        }
    }

    /// The metrics label of the job's kind.
    fn kind(&self) -> &'static str {
        match self {
            Job::Generate { .. } => "generate",
            Job::Embed { .. } => "embed",
            Job::Rerank { .. } => "rerank",
        }
    }
}

/// Handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
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
        let (tx, rx) = mpsc::channel::<Job>();
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

    /// Generates one completion (batched with concurrent requests).
    pub async fn generate(&self, req: GenerateRequest) -> Result<Generation, DaemonError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Generate { req, reply }).map_err(|_| DaemonError::EngineStopped)?;
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
            .send(Job::Rerank { query, documents, task, reply })
            .map_err(|_| DaemonError::EngineStopped)?;
        rx.await.map_err(|_| DaemonError::EngineStopped)?
    }

    /// Embeds texts, one unit vector each, in order (batched with concurrent requests).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, DaemonError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Embed { texts, reply }).map_err(|_| DaemonError::EngineStopped)?;
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
    fn run(self, rx: mpsc::Receiver<Job>) {
        let mut backlog: VecDeque<Job> = VecDeque::new();
        loop {
            if backlog.is_empty() {
                match rx.recv() {
                    Ok(job) => backlog.push_back(job),
                    Err(_) => return, // every handle dropped
                }
            }
            backlog.extend(rx.try_iter());
            backlog.retain(|j| {
                let abandoned = j.abandoned();
                if abandoned {
                    self.metrics.record_abandoned(j.kind(), 1);
                }
                !abandoned
            });
            let Some(first) = backlog.pop_front() else { continue };
            match first {
                Job::Generate { req, reply } => {
                    let mut group = vec![(req, reply)];
                    let mut rest = VecDeque::new();
                    while let Some(job) = backlog.pop_front() {
                        match job {
                            Job::Generate { req, reply } if group.len() < self.max_batch => {
                                group.push((req, reply))
                            }
                            other => rest.push_back(other),
                        }
                    }
                    backlog = rest;
                    self.run_generate(group);
                }
                Job::Embed { texts, reply } => {
                    let mut budget = texts.len();
                    let mut group = vec![(texts, reply)];
                    let mut rest = VecDeque::new();
                    while let Some(job) = backlog.pop_front() {
                        match job {
                            Job::Embed { texts, reply }
                                if budget + texts.len() <= MAX_TEXTS_PER_BATCH =>
                            {
                                budget += texts.len();
                                group.push((texts, reply))
                            }
                            other => rest.push_back(other),
                        }
                    }
                    backlog = rest;
                    self.run_embed(group);
                }
                Job::Rerank { query, documents, task, reply } => {
                    let _ = reply.send(self.run_rerank(&query, &documents, &task));
                }
            }
        }
    }

    fn run_generate(&self, group: Vec<(GenerateRequest, GenerateReply)>) {
        let generator = match &self.generator {
            Ok(g) => g,
            Err(reason) => {
                for (_, reply) in group {
                    let _ = reply.send(Err(unavailable("generation", reason)));
                }
                return;
            }
        };
        let (reqs, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let started = Instant::now();
        // a request whose caller stopped waiting (a worker's timeout) is stopped mid-decode
        let keep = |i: usize| !replies[i].is_closed();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            generator.generate_batch_while(&reqs, &keep)
        }));
        let elapsed = started.elapsed();
        match outcome {
            Ok(Ok(results)) => {
                let tokens: u64 = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .map(|g| u64::from(g.tokens))
                    .sum();
                self.metrics.record_generation(reqs.len(), tokens, elapsed);
                let stopped =
                    results.iter().filter(|r| matches!(r, Err(CoreError::Abandoned))).count();
                self.metrics.record_abandoned("generate", stopped);
                for (result, reply) in results.into_iter().zip(replies) {
                    let _ = reply.send(result.map_err(DaemonError::Engine));
                }
            }
            Ok(Err(e)) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(DaemonError::Engine(CoreError::Decode(msg.clone()))));
                }
            }
            Err(_) => {
                for reply in replies {
                    let _ = reply.send(Err(panicked()));
                }
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
    DaemonError::Engine(CoreError::Decode("the engine panicked on this batch".into()))
}
