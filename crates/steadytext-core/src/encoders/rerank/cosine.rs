//! The embedding-cosine method: the fallback when no reranker model is configured.

use super::{finite, validate, Ranking, RerankMethod};
use crate::{CoreError, Embedder};

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
