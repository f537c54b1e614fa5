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
use std::path::{Path, PathBuf};

use llama_cpp_2::context::params::LlamaPoolingType;
use llama_cpp_2::model::LlamaModel;

use steadytext_api::validate::{check_rerank, InputError};

use crate::backend::load_model;
use crate::models::ModelDir;
use crate::registry::{self, ModelChoice, Role};
use crate::slots::Encoder;
use crate::threads::ThreadPolicy;
use crate::{CoreError, Embedder};

mod cosine;
mod cross_encoder;
mod qwen3;

pub use cosine::{cosine_scores, CosineReranker};

/// The default task: that of the SQL functions (declared in `steadytext-api`).
pub use steadytext_api::wire::DEFAULT_RERANK_TASK as DEFAULT_TASK;

/// `LLAMA_POOLING_TYPE_RANK` as stored in `<arch>.pooling_type`.
const POOLING_RANK: &str = "4";

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

    fn unsupported(&self, reason: &str) -> CoreError {
        CoreError::UnsupportedReranker { path: self.path.clone(), reason: reason.into() }
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
