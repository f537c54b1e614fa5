//! The engine thread's loop: admission of waiting generations by priority then age, one decode
//! step at a time, embedding and rerank calls between steps, and the answers of what ended.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Instant;

use steadytext_core::embed::MAX_TEXTS_PER_BATCH;
use steadytext_core::rerank::{ModelReranker, Ranking};
use steadytext_core::{CoreError, DecodeBatch, Embedder, Generation, Generator};
use tokio::sync::oneshot;

use super::{EmbedReply, EngineCall, GenerationCall, GATHER_WINDOW};
use crate::error::DaemonError;
use crate::metrics::Metrics;

/// State owned by the engine thread.
pub(super) struct Engine {
    /// The generation model, or why it is unavailable.
    pub(super) generator: Result<Generator, String>,
    /// The embedding model, or why it is unavailable.
    pub(super) embedder: Result<Embedder, String>,
    /// The reranker model if one is configured, or why it is unavailable.
    pub(super) reranker: Option<Result<ModelReranker, String>>,
    /// Most generations decoded together.
    pub(super) max_batch: usize,
    /// The daemon's metrics.
    pub(super) metrics: Metrics,
}

impl Engine {
    /// The engine loop: take what arrived (blocking only when there is nothing to do), admit
    /// waiting generations while the batch has room, run waiting embedding and rerank calls,
    /// decode one step, answer the generations that ended; repeat.
    pub(super) fn run(self, rx: mpsc::Receiver<EngineCall>) {
        let mut waiting: Vec<GenerationCall> = Vec::new();
        let mut others: VecDeque<EngineCall> = VecDeque::new();
        let mut arrivals = 0u64;
        // created now rather than by the first request, which would wait for it (about 0.3 s
        // for 8 streams of 4 096 cells); `admit` creates it again after a failure or a panic
        let mut decode: Option<DecodeBatch<'_, GenerationCall>> =
            self.generator.as_ref().ok().and_then(|g| g.decode_batch(self.max_batch).ok());
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
            if live == 0 {
                // nothing decodes, so no running generation waits for what follows
                self.gather(&rx, &mut arrivals, &mut waiting, &mut others);
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

    /// While nothing decodes and generations or embeddings wait: takes the calls of the same
    /// kind that follow within [`GATHER_WINDOW`] of each other (up to a batch of them), so
    /// that requests sent together, such as the jobs of one claim of the queue worker, are
    /// prefilled together and decode in step, or are embedded in one call, instead of the first
    /// one running alone and the others after it (measured in issue #22's profile: one claim
    /// of 8 generations reached the engine as 1 and then 7, every time; and in issue #23's
    /// backfill: a worker's embeddings were completed 4 at a time on average, with concurrency
    /// 8).
    fn gather(
        &self,
        rx: &mpsc::Receiver<EngineCall>,
        arrivals: &mut u64,
        waiting: &mut Vec<GenerationCall>,
        others: &mut VecDeque<EngineCall>,
    ) {
        while self.gathering(waiting, others) {
            match rx.recv_timeout(GATHER_WINDOW) {
                Ok(job) => self.arrive(job, arrivals, waiting, others),
                Err(_) => return,
            }
        }
    }

    /// Whether [`Self::gather`] waits for more: generations wait while fewer than a batch
    /// of them are waiting; embeddings while they are all that waits and hold fewer texts than
    /// a batch.
    fn gathering(&self, waiting: &[GenerationCall], others: &VecDeque<EngineCall>) -> bool {
        if !waiting.is_empty() {
            return waiting.len() < self.max_batch;
        }
        let mut texts = 0;
        for call in others {
            match call {
                EngineCall::Embed { texts: t, .. } => texts += t.len(),
                _ => return false,
            }
        }
        texts > 0 && texts < self.max_batch
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
                EngineCall::WithEmbedder(task) => {
                    task(self.embedder.as_ref().map_err(String::as_str));
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

pub(super) fn unavailable(role: &'static str, reason: &str) -> DaemonError {
    DaemonError::ModelUnavailable { role, reason: reason.to_owned() }
}

pub(super) fn panicked() -> DaemonError {
    DaemonError::Engine(CoreError::Decode("the engine panicked on this request".into()))
}
