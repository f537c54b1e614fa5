//! The daemon's operations on wire bodies — validation, cache, engine — shared by the HTTP
//! handlers (native and OpenAI-compatible) and the queue worker, so every path computes the
//! same result for the same request.

use std::sync::Arc;

use serde_json::json;
use steadytext_api::queue_request::EmbedChunksParams;
use steadytext_api::wire::{
    ConstraintBody, EmbedBody, EmbedReply, GenerateBody, GenerateReply, RerankBody, RerankReply,
};
use steadytext_core::cache_key::cache_key;
use steadytext_core::rerank::cosine_scores;
use steadytext_core::rerank::RerankMethod;
use steadytext_core::{ChatMessage, Constraint, GenerateRequest};

use crate::cache::ResultCache;
use crate::engine_host::{EngineHandle, GenerateOptions, ModelInfo};
use crate::error::DaemonError;
use crate::metrics::Metrics;
use crate::shared_cache::SharedCache;

/// Token counts of one generation (OpenAI's `usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens of the prompt, with the beginning-of-sequence token.
    pub prompt_tokens: u32,
    /// Tokens of the output.
    pub completion_tokens: u32,
}

/// A generation with its token counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The text, its decoded token count (0 when cached) and whether it came from the cache.
    pub reply: GenerateReply,
    /// The token counts.
    pub usage: Usage,
}

/// Engine + cache + metrics; cheap to clone.
#[derive(Clone)]
pub struct Service {
    /// The engine thread.
    pub engine: EngineHandle,
    /// The local result cache (memory + file).
    pub cache: Arc<ResultCache>,
    /// The result cache every worker shares, in PostgreSQL, behind the local one (when the
    /// daemon has a database).
    pub shared: Option<Arc<SharedCache>>,
    /// The metrics registry.
    pub metrics: Metrics,
}

impl Service {
    fn model(&self, role: &'static str) -> Result<&ModelInfo, DaemonError> {
        let info = match role {
            "generation" => &self.engine.generation,
            _ => &self.engine.embedding,
        };
        info.as_ref()
            .map_err(|reason| DaemonError::ModelUnavailable { role, reason: reason.clone() })
    }

    /// The cached results of `keys` (in order): from the local cache, else from the shared one
    /// (which then fills the local one); none when `use_cache` is off.
    async fn cached(
        &self,
        function: &str,
        keys: &[String],
        use_cache: bool,
    ) -> Vec<Option<String>> {
        if !use_cache {
            return vec![None; keys.len()];
        }
        let mut found: Vec<Option<String>> = keys.iter().map(|k| self.cache.get(k)).collect();
        for hit in &found {
            self.metrics.record_cache(function, hit.is_some());
        }
        let missing: Vec<String> =
            keys.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(k, _)| k.clone()).collect();
        if let (Some(shared), false) = (&self.shared, missing.is_empty()) {
            let mut hits = shared.get(&missing).await;
            for (key, slot) in keys.iter().zip(found.iter_mut()).filter(|(_, f)| f.is_none()) {
                let hit = hits.remove(key);
                self.metrics.record_shared_cache(function, hit.is_some());
                if let Some(text) = &hit {
                    self.cache.put(key, text);
                }
                *slot = hit;
            }
        }
        found
    }

    /// Stores computed results in the local cache and the shared one.
    async fn store(&self, entries: Vec<(String, String)>) {
        for (key, text) in &entries {
            self.cache.put(key, text);
        }
        if let Some(shared) = &self.shared {
            shared.put(&entries).await;
        }
    }

    /// Generates text (optionally constrained), from the cache when allowed, at priority 0.
    pub async fn generate(&self, body: GenerateBody) -> Result<GenerateReply, DaemonError> {
        self.generate_with(body, GenerateOptions::default()).await
    }

    /// [`Service::generate`] with the engine's scheduling options: the admission priority
    /// and an optional sink for the text as it is decoded (a cache hit sends the whole text
    /// as one piece).
    pub async fn generate_with(
        &self,
        body: GenerateBody,
        options: GenerateOptions,
    ) -> Result<GenerateReply, DaemonError> {
        Ok(self.run_generation(body, false, options).await?.0)
    }

    /// The prompt of a conversation in the generation model's chat template; generate from it
    /// with [`Service::complete`] and `special_tokens` set.
    pub async fn chat_prompt(&self, messages: Vec<ChatMessage>) -> Result<String, DaemonError> {
        self.engine.with_generator(move |g| g.chat_prompt(&messages)).await
    }

    /// [`Service::generate_with`] reporting the token counts too; `special_tokens` for a
    /// prompt from [`Service::chat_prompt`] (its control tokens are read as such). For a cached
    /// text the counts come from tokenizing the prompt (exact) and the text (which may differ
    /// from the count decoded when the text was generated).
    pub async fn complete(
        &self,
        body: GenerateBody,
        special_tokens: bool,
        options: GenerateOptions,
    ) -> Result<Completion, DaemonError> {
        let prompt = body.generation.prompt.clone();
        let (reply, usage) = self.run_generation(body, special_tokens, options).await?;
        let usage = match usage {
            Some(usage) => usage,
            None => {
                let text = reply.text.clone();
                self.engine
                    .with_generator(move |g| {
                        Ok(Usage {
                            prompt_tokens: g.count_prompt_tokens(&prompt, special_tokens),
                            completion_tokens: g.count_text_tokens(&text),
                        })
                    })
                    .await?
            }
        };
        Ok(Completion { reply, usage })
    }

    /// The generation behind [`Service::generate_with`] and [`Service::complete`]: the reply
    /// and, when it was decoded now (not cached), its token counts.
    async fn run_generation(
        &self,
        body: GenerateBody,
        special_tokens: bool,
        options: GenerateOptions,
    ) -> Result<(GenerateReply, Option<Usage>), DaemonError> {
        let max_tokens = body.validate()?;
        let function = body.function().sql_name();
        let model = self.model("generation")?;
        let GenerateBody { generation: params, constraint } = body;
        let mut identity = json!({"prompt": params.prompt, "max_tokens": max_tokens,
                                  "seed": params.seed, "constraint": constraint});
        if special_tokens {
            // only chat prompts carry the flag, so the keys of plain prompts stay as they were
            identity["special_tokens"] = json!(true);
        }
        let key = cache_key(&model.digest, function, &identity);
        let hit = self.cached(function, std::slice::from_ref(&key), params.use_cache).await;
        if let Some(text) = hit.into_iter().next().flatten() {
            if let Some(sink) = &options.sink {
                let _ = sink.send(text.clone());
            }
            return Ok((GenerateReply { text, tokens: 0, cached: true }, None));
        }
        let constraint = constraint.map(|c| match c {
            ConstraintBody::Json { schema } => Constraint::Json(schema),
            ConstraintBody::Regex { pattern } => Constraint::Regex(pattern),
            ConstraintBody::Choice { choices } => Constraint::Choice(choices),
        });
        let req = GenerateRequest {
            prompt: params.prompt,
            max_tokens,
            seed: params.seed as u32,
            constraint,
            special_tokens,
        };
        let generation = self.engine.generate(req, options).await?;
        if params.use_cache {
            self.store(vec![(key, generation.text.clone())]).await;
        }
        let usage =
            Usage { prompt_tokens: generation.prompt_tokens, completion_tokens: generation.tokens };
        let reply =
            GenerateReply { text: generation.text, tokens: generation.tokens, cached: false };
        Ok((reply, Some(usage)))
    }

    /// Embeds texts; each text is cached on its own, and only the misses reach the engine.
    pub async fn embed(&self, body: EmbedBody) -> Result<EmbedReply, DaemonError> {
        body.validate()?;
        let model = self.model("embedding")?;
        let keys: Vec<String> = body
            .texts
            .iter()
            .map(|t| {
                cache_key(&model.digest, "embed", &json!({"text_input": t, "seed": body.seed}))
            })
            .collect();
        let mut vectors: Vec<Option<Vec<f32>>> = self
            .cached("embed", &keys, body.use_cache)
            .await
            .into_iter()
            .map(|hit| hit.and_then(|v| serde_json::from_str::<Vec<f32>>(&v).ok()))
            .collect();
        let cached: Vec<bool> = vectors.iter().map(Option::is_some).collect();
        let missing: Vec<usize> = (0..vectors.len()).filter(|&i| vectors[i].is_none()).collect();
        if !missing.is_empty() {
            let texts = missing.iter().map(|&i| body.texts[i].clone()).collect();
            let fresh = self.engine.embed(texts).await?;
            let mut computed = Vec::new();
            for (i, v) in missing.into_iter().zip(fresh) {
                if body.use_cache {
                    let text = serde_json::to_string(&v).expect("finite floats serialise");
                    computed.push((keys[i].clone(), text));
                }
                vectors[i] = Some(v);
            }
            self.store(computed).await;
        }
        let embeddings = vectors.into_iter().map(|v| v.expect("every text embedded")).collect();
        Ok(EmbedReply { embeddings, cached })
    }

    /// Splits a text into chunks of the embedding model's tokens (paragraph and sentence
    /// boundaries where it can, nothing dropped) and embeds each chunk as [`Service::embed`]
    /// does: each chunk is cached on its own, so a document edited in one paragraph costs only
    /// that paragraph's chunks. Returns the chunks with their vectors, in order.
    pub async fn embed_chunks(
        &self,
        params: EmbedChunksParams,
    ) -> Result<Vec<(String, Vec<f32>)>, DaemonError> {
        params.validate()?;
        let (text, size, overlap) =
            (params.text_input, params.chunk_tokens as usize, params.chunk_overlap as usize);
        let chunks = self.engine.with_embedder(move |e| Ok(e.chunk(&text, size, overlap))).await?;
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let body =
            EmbedBody { texts: chunks.clone(), use_cache: params.use_cache, seed: params.seed };
        let reply = self.embed(body).await?;
        Ok(chunks.into_iter().zip(reply.embeddings).collect())
    }

    /// Scores documents against a query with the configured reranker model; without one
    /// (the offline set has none) the scores are embedding cosine similarities, and the reply
    /// says so in `method` — never silently.
    pub async fn rerank(&self, body: RerankBody) -> Result<RerankReply, DaemonError> {
        body.validate()?;
        let model = match &self.engine.rerank {
            None => return self.rerank_by_embedding(body).await,
            Some(Err(reason)) => {
                return Err(DaemonError::ModelUnavailable {
                    role: "rerank",
                    reason: reason.clone(),
                })
            }
            Some(Ok(model)) => model.clone(),
        };
        let key = cache_key(
            &model.digest,
            "rerank",
            &json!({"query": body.query, "documents": body.documents, "task": body.task,
                    "seed": body.seed}),
        );
        let hit = self.cached("rerank", std::slice::from_ref(&key), body.use_cache).await;
        if let Some(hit) = hit.into_iter().next().flatten() {
            if let Ok(mut reply) = serde_json::from_str::<RerankReply>(&hit) {
                reply.cached = true;
                return Ok(reply);
            }
        }
        let ranking = self.engine.rerank(body.query, body.documents, body.task).await?;
        let reply = RerankReply {
            method: ranking.method.kind().to_owned(),
            model: model.file,
            scores: ranking.scores,
            cached: false,
        };
        if body.use_cache {
            let text = serde_json::to_string(&reply).expect("finite scores serialise");
            self.store(vec![(key, text)]).await;
        }
        Ok(reply)
    }

    /// The fallback of [`Service::rerank`]: cosine similarity of the query's embedding with
    /// each document's (embeddings come from the per-text cache when allowed).
    async fn rerank_by_embedding(&self, body: RerankBody) -> Result<RerankReply, DaemonError> {
        let model = self.model("embedding")?.clone();
        let mut texts = vec![body.query];
        texts.extend(body.documents);
        let reply =
            self.embed(EmbedBody { texts, use_cache: body.use_cache, seed: body.seed }).await?;
        let (query, docs) = reply.embeddings.split_first().expect("query embedded");
        let method = RerankMethod::EmbeddingCosine { model: model.name };
        Ok(RerankReply {
            method: method.kind().to_owned(),
            model: model.file,
            scores: cosine_scores(query, docs),
            cached: reply.cached.iter().all(|c| *c),
        })
    }
}
