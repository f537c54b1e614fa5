//! Reranking: a relevance score for every (query, document) pair, computed by one of three
//! methods that the result always names ([`RerankMethod`]):
//!
//! * **cross-encoder** — a BERT-family GGUF with a classification head and rank pooling
//!   (`<arch>.pooling_type = 4`). Each pair is fed as llama.cpp's server feeds rerankers,
//!   `BOS query EOS SEP document EOS` (for BERT vocabularies, which have no EOS:
//!   `[CLS] query [SEP] document [SEP]`); llama.cpp pools the `[CLS]` row through the `cls`
//!   head and returns the score. Pairs are batched exactly like [`crate::Embedder`] batches texts
//!   (aligned slots, flash attention off), so a score is bit-identical alone or in a batch.
//! * **Qwen3-Reranker** — a causal LM (`qwen3` architecture) judging the Qwen3-Reranker prompt
//!   (system instruction, `<Instruct>: {task}`, `<Query>`, `<Document>`, empty think block);
//!   the score is P("yes") = softmax over the "yes" and "no" logits at the last position. A
//!   GGUF converted with a rank head (`qwen3.pooling_type = 4`, `cls.output` = yes/no rows) is
//!   run through llama.cpp's rank pooling instead, which computes the same softmax. Pairs are
//!   evaluated one at a time in a cleared context.
//! * **embedding cosine** — the fallback when no reranker is configured: cosine similarity of
//!   the query's and each document's embedding (the task is not used).

use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use steadytext_api::validate::{check_rerank, InputError};

use crate::backend::{backend, load_model};
use crate::error::decode_err;
use crate::models::ModelDir;
use crate::registry::{self, ModelChoice, Role};
use crate::slots::{Encoder, MAX_SEQ_TOKENS};
use crate::threads::ThreadPolicy;
use crate::{CoreError, Embedder};

/// The default task: that of the SQL functions (declared in `steadytext-api`).
pub use steadytext_api::wire::DEFAULT_RERANK_TASK as DEFAULT_TASK;

/// `LLAMA_POOLING_TYPE_RANK` as stored in `<arch>.pooling_type`.
const POOLING_RANK: &str = "4";
/// Largest context used for Qwen3-Reranker pairs (upstream steadytext's window).
const QWEN3_MAX_CTX: u32 = 8192;
/// Tokens per llama.cpp decode call on the Qwen3 path.
const QWEN3_CHUNK: usize = 512;

const QWEN3_PREFIX: &str = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
const QWEN3_SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";

/// How the scores of a [`Ranking`] were computed, and with which model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RerankMethod {
    /// A GGUF cross-encoder through llama.cpp's rank pooling.
    CrossEncoder {
        /// The model's name (registry name or file name).
        model: String,
    },
    /// A Qwen3-Reranker: P("yes") of the yes/no judgement.
    Qwen3 {
        /// The model's name (registry name or file name).
        model: String,
    },
    /// Cosine similarity of embeddings (no reranker configured).
    EmbeddingCosine {
        /// The embedding model's name.
        model: String,
    },
}

impl RerankMethod {
    /// Short kind name: `cross-encoder`, `qwen3-reranker` or `embedding-cosine`.
    pub fn kind(&self) -> &'static str {
        match self {
            RerankMethod::CrossEncoder { .. } => "cross-encoder",
            RerankMethod::Qwen3 { .. } => "qwen3-reranker",
            RerankMethod::EmbeddingCosine { .. } => "embedding-cosine",
        }
    }

    /// The model that produced the scores.
    pub fn model(&self) -> &str {
        match self {
            RerankMethod::CrossEncoder { model }
            | RerankMethod::Qwen3 { model }
            | RerankMethod::EmbeddingCosine { model } => model,
        }
    }
}

impl fmt::Display for RerankMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind(), self.model())
    }
}

/// Scores of one rerank request.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// How the scores were computed.
    pub method: RerankMethod,
    /// One finite score per document, in input order; higher is more relevant.
    pub scores: Vec<f64>,
}

impl Ranking {
    /// Document indices by score, highest first; equal scores keep input order.
    pub fn order(&self) -> Vec<usize> {
        steadytext_api::wire::rank_order(&self.scores)
    }

    /// `(document, score)` pairs in [`Ranking::order`]; `documents` are the request's, in input
    /// order.
    pub fn ranked<'a, D>(&self, documents: &'a [D]) -> Vec<(&'a D, f64)> {
        self.order().into_iter().map(|i| (&documents[i], self.scores[i])).collect()
    }
}

/// Checks a request with the shared rule ([`check_rerank`]: non-blank query, at least one
/// document, no blank document), as the engine's typed errors.
pub fn validate(query: &str, documents: &[&str]) -> Result<(), CoreError> {
    check_rerank(query, documents).map_err(|e| match e {
        InputError::EmptyText { .. } | InputError::BlankText { .. } => CoreError::EmptyQuery,
        InputError::EmptyElement { index, .. } | InputError::BlankElement { index, .. } => {
            CoreError::EmptyDocument { index: index - 1 }
        }
        InputError::EmptyArray { .. } => CoreError::NoDocuments,
        other => CoreError::Input(other),
    })
}

/// The kind of a reranker GGUF, read from its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankerKind {
    /// BERT-family encoder with rank pooling and a classification head.
    CrossEncoder,
    /// Qwen3-Reranker converted with a yes/no rank head (`qwen3.pooling_type = 4`).
    Qwen3Pooled,
    /// Qwen3-Reranker as a plain causal LM: yes/no logits.
    Qwen3Logits,
}

/// Encoder architectures of llama.cpp that support rank pooling with a `cls` head.
const ENCODER_ARCHS: &[&str] =
    &["bert", "nomic-bert", "jina-bert-v2", "jina-bert-v3", "modern-bert", "eurobert"];

/// A loaded reranker model (cross-encoder or Qwen3-Reranker).
pub struct ModelReranker {
    /// The model; its kept context serves the cross-encoder path (the Qwen3 paths create
    /// their own).
    encoder: Encoder,
    path: PathBuf,
    name: String,
    kind: RerankerKind,
}

impl ModelReranker {
    /// Loads a reranker GGUF, reporting it under `name`; a model that is not a supported
    /// reranker is [`CoreError::UnsupportedReranker`].
    pub fn load(
        path: &Path,
        name: impl Into<String>,
        threads: impl Into<ThreadPolicy>,
    ) -> Result<Self, CoreError> {
        let model = load_model(path)?;
        let kind = detect_kind(&model, path)?;
        Ok(Self {
            encoder: Encoder::new(model, threads.into(), LlamaPoolingType::Rank),
            path: path.to_owned(),
            name: name.into(),
            kind,
        })
    }

    fn model(&self) -> &LlamaModel {
        self.encoder.model()
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What kind of reranker the file is.
    pub fn kind(&self) -> RerankerKind {
        self.kind
    }

    /// The method reported in this reranker's rankings.
    pub fn method(&self) -> RerankMethod {
        let model = self.name.clone();
        match self.kind {
            RerankerKind::CrossEncoder => RerankMethod::CrossEncoder { model },
            RerankerKind::Qwen3Pooled | RerankerKind::Qwen3Logits => RerankMethod::Qwen3 { model },
        }
    }

    /// Scores every document against `query`; `task` is used by Qwen3-Reranker only.
    pub fn rerank(
        &self,
        query: &str,
        documents: &[&str],
        task: &str,
    ) -> Result<Ranking, CoreError> {
        validate(query, documents)?;
        let scores = match self.kind {
            RerankerKind::CrossEncoder => self.cross_encoder_scores(query, documents)?,
            RerankerKind::Qwen3Pooled | RerankerKind::Qwen3Logits => {
                self.qwen3_scores(query, documents, task)?
            }
        };
        finite(Ranking { method: self.method(), scores })
    }

    /// The token ids a cross-encoder is fed for one (query, document) pair (for inspection).
    pub fn pair_tokens(&self, query: &str, document: &str) -> Result<Vec<i32>, CoreError> {
        let vocab = self.model().vocab();
        let q = vocab.tokenize(query.as_bytes(), false, false);
        let d = vocab.tokenize(document.as_bytes(), false, false);
        let max = (self.model().n_ctx_train() as usize).min(MAX_SEQ_TOKENS);
        Ok(self.pair(&q, &d, max)?.into_iter().map(|t| t.0).collect())
    }

    fn cross_encoder_scores(&self, query: &str, documents: &[&str]) -> Result<Vec<f64>, CoreError> {
        let vocab = self.model().vocab();
        let q = vocab.tokenize(query.as_bytes(), false, false);
        if q.is_empty() {
            return Err(CoreError::EmptyQuery);
        }
        let max = (self.model().n_ctx_train() as usize).min(MAX_SEQ_TOKENS);
        let pairs = documents
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let d = vocab.tokenize(d.as_bytes(), false, false);
                if d.is_empty() {
                    return Err(CoreError::EmptyDocument { index });
                }
                self.pair(&q, &d, max)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.encoder.encode(&pairs, |ctx, seq| {
            let out = ctx.embeddings_seq_ith(seq).map_err(decode_err)?;
            out.first()
                .map(|&s| f64::from(s))
                .ok_or_else(|| CoreError::Decode("the rank head produced no score".into()))
        })
    }

    /// `BOS query EOS [SEP] document EOS`, EOS falling back to SEP (BERT), truncated to `max`
    /// tokens (the query to half of it, then the document).
    fn pair(
        &self,
        query: &[LlamaToken],
        doc: &[LlamaToken],
        max: usize,
    ) -> Result<Vec<LlamaToken>, CoreError> {
        let vocab = self.model().vocab();
        let null = LlamaToken(-1);
        let (bos, eos, sep) = (vocab.bos(), vocab.eos(), vocab.sep());
        let end = if eos != null { eos } else { sep };
        if end == null {
            return Err(self.unsupported("the vocabulary has neither an EOS nor a SEP token"));
        }
        let mut out = Vec::with_capacity(max);
        if vocab.should_add_bos() && bos != null {
            out.push(bos);
        }
        out.extend_from_slice(&query[..query.len().min(max / 2)]);
        out.push(end);
        if eos != null && sep != null {
            out.push(sep);
        }
        let room = max.saturating_sub(out.len() + 1);
        out.extend_from_slice(&doc[..doc.len().min(room)]);
        out.push(end);
        Ok(out)
    }

    /// P("yes") of the Qwen3-Reranker judgement of each document, one pair at a time in one
    /// context (of a fixed size, cleared between pairs, so a score never depends on the
    /// documents before it).
    fn qwen3_scores(
        &self,
        query: &str,
        documents: &[&str],
        task: &str,
    ) -> Result<Vec<f64>, CoreError> {
        let n_ctx = self.model().n_ctx_train().clamp(QWEN3_CHUNK as u32, QWEN3_MAX_CTX);
        let pooled = self.kind == RerankerKind::Qwen3Pooled;
        let yes_no = if pooled { None } else { Some(self.yes_no_tokens()?) };
        let mut ctx = self.qwen3_context(n_ctx, pooled)?;
        let mut batch = LlamaBatch::new(QWEN3_CHUNK, 1);
        let mut scores = Vec::with_capacity(documents.len());
        for doc in documents {
            let tokens = self.qwen3_pair_tokens(task, query, doc, n_ctx as usize);
            ctx.clear_kv_cache();
            for (c, chunk) in tokens.chunks(QWEN3_CHUNK).enumerate() {
                batch.clear();
                for (i, tok) in chunk.iter().enumerate() {
                    let pos = c * QWEN3_CHUNK + i;
                    let last = pos + 1 == tokens.len();
                    batch.add(*tok, pos as i32, &[0], pooled || last).map_err(decode_err)?;
                }
                ctx.decode(&mut batch).map_err(decode_err)?;
            }
            scores.push(qwen3_score(&ctx, &batch, yes_no)?);
        }
        Ok(scores)
    }

    /// A context for one Qwen3-Reranker pair at a time: rank pooling for a converted rank head,
    /// plain logits otherwise.
    fn qwen3_context(&self, n_ctx: u32, pooled: bool) -> Result<LlamaContext<'_>, CoreError> {
        let threads = self.encoder.threads().now();
        let mut params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(QWEN3_CHUNK as u32)
            .with_n_ubatch(QWEN3_CHUNK as u32)
            .with_n_seq_max(1)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        if pooled {
            params = params.with_embeddings(true).with_pooling_type(LlamaPoolingType::Rank);
        }
        self.model().new_context(backend()?, params).map_err(|e| CoreError::Context(e.to_string()))
    }

    /// The Qwen3-Reranker prompt of one (query, document) pair, its body truncated to fit
    /// `n_ctx`. User text is tokenized without special-token parsing: it cannot inject markers.
    fn qwen3_pair_tokens(
        &self,
        task: &str,
        query: &str,
        doc: &str,
        n_ctx: usize,
    ) -> Vec<LlamaToken> {
        let vocab = self.model().vocab();
        let prefix = vocab.tokenize(QWEN3_PREFIX.as_bytes(), false, true);
        let suffix = vocab.tokenize(QWEN3_SUFFIX.as_bytes(), false, true);
        let body = format!("<Instruct>: {task}\n<Query>: {query}\n<Document>: {doc}");
        let mut body = vocab.tokenize(body.as_bytes(), false, false);
        body.truncate(n_ctx.saturating_sub(prefix.len() + suffix.len()));
        prefix.into_iter().chain(body).chain(suffix).collect()
    }

    fn yes_no_tokens(&self) -> Result<(LlamaToken, LlamaToken), CoreError> {
        let vocab = self.model().vocab();
        let one = |word: &str| match vocab.tokenize(word.as_bytes(), false, false).as_slice() {
            [t] => Ok(*t),
            _ => Err(self.unsupported(&format!("{word:?} is not a single token"))),
        };
        Ok((one("yes")?, one("no")?))
    }

    fn unsupported(&self, reason: &str) -> CoreError {
        CoreError::UnsupportedReranker { path: self.path.clone(), reason: reason.into() }
    }
}

/// The score of the pair just decoded: the rank head's output (llama.cpp applies the softmax
/// over the head's labels; the first is "yes"), or P("yes") from the yes/no logits of the last
/// position.
fn qwen3_score(
    ctx: &LlamaContext<'_>,
    batch: &LlamaBatch<'_>,
    yes_no: Option<(LlamaToken, LlamaToken)>,
) -> Result<f64, CoreError> {
    match yes_no {
        None => ctx
            .embeddings_seq_ith(0)
            .map_err(decode_err)?
            .first()
            .map(|&s| f64::from(s))
            .ok_or_else(|| CoreError::Decode("the rank head produced no score".into())),
        Some((yes, no)) => {
            let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
            let (ly, ln) = (f64::from(logits[yes.0 as usize]), f64::from(logits[no.0 as usize]));
            Ok(1.0 / (1.0 + (ln - ly).exp()))
        }
    }
}

/// Reads the architecture and pooling type of a loaded model and decides how to rerank with it.
fn detect_kind(model: &LlamaModel, path: &Path) -> Result<RerankerKind, CoreError> {
    let unsupported =
        |reason: String| CoreError::UnsupportedReranker { path: path.to_owned(), reason };
    let arch = model
        .meta_val_str("general.architecture")
        .map_err(|_| unsupported("no general.architecture in its metadata".into()))?;
    let pooling = model.meta_val_str(&format!("{arch}.pooling_type")).ok();
    let rank = pooling.as_deref() == Some(POOLING_RANK);
    if ENCODER_ARCHS.contains(&arch.as_str()) {
        return if rank {
            Ok(RerankerKind::CrossEncoder)
        } else {
            Err(unsupported(format!(
                "{arch} encoder with pooling type {} (an embedding model, not a cross-encoder: rank pooling is 4)",
                pooling.as_deref().unwrap_or("unset")
            )))
        };
    }
    if arch == "qwen3" {
        if rank {
            return Ok(RerankerKind::Qwen3Pooled);
        }
        let name = model.meta_val_str("general.name").unwrap_or_default();
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if format!("{name} {file}").to_ascii_lowercase().contains("rerank") {
            return Ok(RerankerKind::Qwen3Logits);
        }
        return Err(unsupported(format!(
            "qwen3 model {name:?} is not named as a reranker (Qwen3-Reranker expected)"
        )));
    }
    Err(unsupported(format!("architecture {arch}")))
}

/// Cosine similarity of embeddings: the fallback when no reranker model is configured.
pub struct CosineReranker {
    embedder: Embedder,
    name: String,
}

impl CosineReranker {
    /// Uses `embedder`, reported under `name`.
    pub fn new(embedder: Embedder, name: impl Into<String>) -> Self {
        Self { embedder, name: name.into() }
    }

    /// The method reported in this reranker's rankings.
    pub fn method(&self) -> RerankMethod {
        RerankMethod::EmbeddingCosine { model: self.name.clone() }
    }

    /// Cosine similarity of the query's embedding with each document's (in one embedding batch;
    /// the embedder makes each vector independent of its neighbours).
    pub fn rerank(&self, query: &str, documents: &[&str]) -> Result<Ranking, CoreError> {
        validate(query, documents)?;
        let texts: Vec<&str> = std::iter::once(query).chain(documents.iter().copied()).collect();
        let vectors = self.embedder.embed_batch(&texts).map_err(|e| match e {
            CoreError::EmptyText { index: 0 } => CoreError::EmptyQuery,
            CoreError::EmptyText { index } => CoreError::EmptyDocument { index: index - 1 },
            other => other,
        })?;
        let (q, docs) = vectors.split_first().expect("the query's vector");
        finite(Ranking { method: self.method(), scores: cosine_scores(q, docs) })
    }
}

/// The embedding-cosine scores of `documents` against `query` (one vector each): the fallback
/// method's one formula, used by [`CosineReranker`] and the daemon's cached path.
pub fn cosine_scores(query: &[f32], documents: &[Vec<f32>]) -> Vec<f64> {
    documents.iter().map(|d| f64::from(crate::embed::cosine(query, d))).collect()
}

/// A reranker of either kind.
pub enum Reranker {
    /// A reranker model.
    Model(ModelReranker),
    /// Embedding cosine (no reranker model configured).
    Cosine(CosineReranker),
}

impl Reranker {
    /// The reranker the environment configures: [`Reranker::load`] with the choices of
    /// `STEADYTEXT_RERANK_MODEL` and `STEADYTEXT_EMBEDDING_MODEL` (see [`registry::choose`]).
    pub fn from_env(dir: &ModelDir, threads: impl Into<ThreadPolicy>) -> Result<Self, CoreError> {
        let embedding =
            registry::choose(Role::Embedding)?.expect("the mini set has an embedding model");
        Self::load(registry::choose(Role::Rerank)?, embedding, dir, threads)
    }

    /// The reranker model `rerank` if one is chosen (a missing file is an error, never a
    /// silent fallback), else embedding cosine on `embedding` (all-MiniLM-L6-v2 is imported
    /// from its packaged folder on first use).
    pub fn load(
        rerank: Option<ModelChoice>,
        embedding: ModelChoice,
        dir: &ModelDir,
        threads: impl Into<ThreadPolicy>,
    ) -> Result<Self, CoreError> {
        let threads = threads.into();
        if let Some(choice) = rerank {
            let path = choice.locate(dir)?;
            return Ok(Reranker::Model(ModelReranker::load(
                &path,
                choice.display_name(),
                threads,
            )?));
        }
        let path = embedding.locate_importing(dir)?;
        let embedder = Embedder::load(&path, threads)?;
        Ok(Reranker::Cosine(CosineReranker::new(embedder, embedding.display_name())))
    }

    /// The method this reranker's rankings report.
    pub fn method(&self) -> RerankMethod {
        match self {
            Reranker::Model(m) => m.method(),
            Reranker::Cosine(c) => c.method(),
        }
    }

    /// Scores every document against `query` (see [`ModelReranker::rerank`] and
    /// [`CosineReranker::rerank`]).
    pub fn rerank(
        &self,
        query: &str,
        documents: &[&str],
        task: &str,
    ) -> Result<Ranking, CoreError> {
        match self {
            Reranker::Model(m) => m.rerank(query, documents, task),
            Reranker::Cosine(c) => c.rerank(query, documents),
        }
    }
}

fn finite(r: Ranking) -> Result<Ranking, CoreError> {
    match r.scores.iter().position(|s| !s.is_finite()) {
        Some(i) => {
            Err(CoreError::Decode(format!("{} gave a non-finite score for document {i}", r.method)))
        }
        None => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranking(scores: &[f64]) -> Ranking {
        Ranking {
            method: RerankMethod::EmbeddingCosine { model: "m".into() },
            scores: scores.to_vec(),
        }
    }

    #[test]
    fn order_is_by_score_then_input_order() {
        let r = ranking(&[0.1, 0.9, 0.5, 0.9, -1.0]);
        assert_eq!(r.order(), vec![1, 3, 2, 0, 4]);
        let docs = ["a", "b", "c", "d", "e"];
        let ranked: Vec<_> = r.ranked(&docs).into_iter().map(|(d, s)| (*d, s)).collect();
        assert_eq!(ranked, vec![("b", 0.9), ("d", 0.9), ("c", 0.5), ("a", 0.1), ("e", -1.0)]);
    }

    #[test]
    fn invalid_requests_are_typed_errors() {
        assert!(matches!(validate("  ", &["d"]), Err(CoreError::EmptyQuery)));
        assert!(matches!(validate("q", &[]), Err(CoreError::NoDocuments)));
        assert!(matches!(validate("q", &["d", " \n"]), Err(CoreError::EmptyDocument { index: 1 })));
        assert!(validate("q", &["d"]).is_ok());
    }

    #[test]
    fn non_finite_scores_are_refused() {
        let err = finite(ranking(&[0.5, f64::NAN])).unwrap_err();
        assert!(err.to_string().contains("document 1"), "{err}");
    }

    #[test]
    fn methods_name_their_kind_and_model() {
        let m = RerankMethod::CrossEncoder { model: "bge".into() };
        assert_eq!(m.to_string(), "cross-encoder (bge)");
        assert_eq!(RerankMethod::Qwen3 { model: "q".into() }.kind(), "qwen3-reranker");
    }
}
