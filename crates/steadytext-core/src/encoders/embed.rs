//! Sentence embeddings on a BERT GGUF (the imported all-MiniLM-L6-v2): mean pooling over the
//! tokens of each text and L2 normalisation, with many texts per llama.cpp batch and results
//! that are bit-identical whether a text is embedded alone or next to any other texts.
//!
//! Batches use the aligned slots of [`crate::slots`], which keep every vector bit-identical to
//! the text's alone vector. llama.cpp's mean pooling (`LLAMA_POOLING_TYPE_MEAN`, a matrix product
//! of the whole batch with a 1/n weight matrix) is made batch-invariant by the aligned slots as
//! well (measured: the test passes with it, as with averaging per-token vectors outside
//! llama.cpp). The L2 normalisation is done here, in f64 in a fixed order.

use std::path::{Path, PathBuf};

use llama_cpp_2::context::params::LlamaPoolingType;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::backend::load_model;
use crate::error::decode_err;
use crate::slots::{Encoder, MAX_SEQ_TOKENS};
use crate::threads::ThreadPolicy;
use crate::CoreError;

pub use crate::slots::MAX_TEXTS_PER_BATCH;

/// A loaded embedding model.
pub struct Embedder {
    encoder: Encoder,
    path: PathBuf,
}

impl Embedder {
    /// Loads a BERT-family GGUF from `path`, running on `threads` CPU threads (a count, or a
    /// [`ThreadPolicy`]).
    pub fn load(path: &Path, threads: impl Into<ThreadPolicy>) -> Result<Self, CoreError> {
        let model = load_model(path)?;
        let encoder = Encoder::new(model, threads.into(), LlamaPoolingType::Mean);
        Ok(Self { encoder, path: path.to_owned() })
    }

    fn model(&self) -> &LlamaModel {
        self.encoder.model()
    }

    /// How many llama.cpp contexts this embedder has created: one, kept from call to call,
    /// unless calls overlapped or failed.
    pub fn contexts_created(&self) -> u64 {
        self.encoder.contexts_created()
    }

    /// The model file this embedder was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.model().n_embd_out() as usize
    }

    /// Longest token sequence embedded: the trained context (512 for MiniLM), at most
    /// [`MAX_SEQ_TOKENS`] (511, which leaves room for the slot's padding token); longer texts are
    /// truncated to it, keeping the final separator token.
    pub fn max_tokens(&self) -> usize {
        (self.model().n_ctx_train() as usize).min(MAX_SEQ_TOKENS)
    }

    /// How many of the model's tokens `text` is (without the [CLS] and [SEP] it is embedded
    /// between).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model().vocab().tokenize(text.as_bytes(), false, false).len()
    }

    /// Splits `text` into chunks of at most `chunk_tokens` of the model's tokens (and at most
    /// what it embeds whole: [`Embedder::max_tokens`] less [CLS] and [SEP]), consecutive chunks
    /// of a paragraph sharing up to `overlap` tokens, at paragraph and sentence boundaries where
    /// it can (see [`crate::chunking`]). Nothing is dropped: every word is in a chunk, and no
    /// chunk is truncated when embedded.
    pub fn chunk(&self, text: &str, chunk_tokens: usize, overlap: usize) -> Vec<String> {
        let max = chunk_tokens.min(self.max_tokens() - 2).max(1);
        crate::chunking::chunk_ranges(text, max, overlap, |s| self.count_tokens(s))
            .into_iter()
            .map(|r| text[r].to_owned())
            .collect()
    }

    /// Embeds one text: unit-length mean-pooled vector.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, CoreError> {
        Ok(self.embed_batch(&[text])?.pop().expect("one vector per text"))
    }

    /// Embeds many texts, as few llama.cpp batches as the limits allow (one sequence id per
    /// text); vector `i` is bit-identical to `embed(texts[i])`.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, CoreError> {
        let tokenized = texts
            .iter()
            .enumerate()
            .map(|(i, t)| self.tokenize(i, t))
            .collect::<Result<Vec<_>, _>>()?;
        self.encoder.encode(&tokenized, |ctx, seq| {
            Ok(normalize(ctx.embeddings_seq_ith(seq).map_err(decode_err)?))
        })
    }

    fn tokenize(&self, index: usize, text: &str) -> Result<Vec<LlamaToken>, CoreError> {
        // With special tokens: [CLS] text [SEP].
        let mut tokens = self.model().vocab().tokenize(text.as_bytes(), true, false);
        if text.trim().is_empty() || tokens.len() <= 2 {
            return Err(CoreError::EmptyText { index });
        }
        let max = self.max_tokens();
        if tokens.len() > max {
            let sep = *tokens.last().expect("non-empty");
            tokens.truncate(max - 1);
            tokens.push(sep);
        }
        Ok(tokens)
    }
}

/// `v` scaled to unit L2 norm, computed in f64 in a fixed order (a zero vector stays zero).
fn normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    v.iter().map(|&x| (f64::from(x) * scale) as f32).collect()
}

/// Cosine similarity of two vectors (dot product over the product of norms).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_normalised() {
        assert_eq!(normalize(&[3.0, 4.0]), vec![0.6, 0.8]);
        assert_eq!(normalize(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-7);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-7);
    }
}
