//! Sentence embeddings on a BERT GGUF (the imported all-MiniLM-L6-v2): mean pooling over the
//! tokens of each text and L2 normalisation, with many texts per llama.cpp batch and results
//! that are bit-identical whether a text is embedded alone or next to any other texts.
//!
//! # How batching stays bit-identical
//!
//! llama.cpp encodes a whole batch as one ubatch: every sequence is a block of rows in the same
//! attention matrix, and other sequences are masked with `-inf`. The masked entries contribute
//! exact zeros, but the SIMD kernels (softmax row sums, the `V·softmax` and pooling dot
//! products) add numbers in groups of 8/32 lanes, so the *rounding* of a sequence's sums
//! depends on where its tokens sit in the batch and on how long the batch is. Two settings
//! make the computation independent of the neighbours (both measured with the test
//! `batching_never_changes_a_vector`: undoing it makes that test fail):
//!
//! * every text occupies a slot whose start and length are multiples of [`SLOT_ALIGN`] tokens
//!   (the remainder is filled with `[PAD]` tokens in a separate, discarded sequence), so its
//!   non-zero terms fall in the same SIMD lanes and groups whatever precedes or follows it.
//!   Packed back to back (alignment 1), a text differs from its alone vector as soon as it has
//!   one neighbour; 8 happened to pass, 32 also covers `ggml_vec_dot_f32`'s 32-element steps;
//! * flash attention is disabled: llama.cpp's CPU flash-attention kernel switches to a tiled
//!   variant once a batch has 64 or more tokens, which regroups the sums by batch size
//!   (enabled, the test fails even with aligned slots).
//!
//! llama.cpp's mean pooling (`LLAMA_POOLING_TYPE_MEAN`, a matrix product of the whole batch with
//! a 1/n weight matrix) is subject to the same lane grouping and is made batch-invariant by the
//! aligned slots as well (measured: the test passes with it, as with averaging per-token vectors
//! outside llama.cpp). The L2 normalisation is done here, in f64 in a fixed order.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::backend::{backend, load_model, thread_count};
use crate::CoreError;

/// Alignment (in tokens) of every text's slot in a batch; a multiple of the widest SIMD
/// grouping of ggml's CPU dot products (4 accumulators × 8 lanes on AVX2).
pub const SLOT_ALIGN: usize = 32;

/// Most tokens (slots included) encoded in one llama.cpp batch: one maximal (512-token) text.
/// Attention is computed over the whole batch and masked per text, so its cost grows with the
/// square of this; measured on 2 cores (1 thread), 32 short texts took 1.1 s in 512-token
/// batches and 1.4 s in 1024-token batches, against 0.7 s one text per call.
pub const BATCH_TOKENS: usize = 512;

/// Most texts in one llama.cpp batch (each uses two sequence ids: text and padding; llama.cpp
/// allows 256).
pub const MAX_TEXTS_PER_BATCH: usize = 64;

// llama.cpp aborts unless n_batch >= n_seq_max (two sequence ids per text).
const _: () = assert!(BATCH_TOKENS >= 2 * MAX_TEXTS_PER_BATCH);

/// `LLAMA_FLASH_ATTN_TYPE_DISABLED` of llama.h (llama-cpp-2 takes the raw enum value).
const FLASH_ATTN_DISABLED: i32 = 0;

/// A loaded embedding model.
pub struct Embedder {
    model: LlamaModel,
    path: PathBuf,
    threads: i32,
}

impl Embedder {
    /// Loads a BERT-family GGUF from `path`, running on `threads` CPU threads.
    pub fn load(path: &Path, threads: usize) -> Result<Self, CoreError> {
        let model = load_model(path)?;
        Ok(Self { model, path: path.to_owned(), threads: thread_count(threads) })
    }

    /// The model file this embedder was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.model.n_embd_out() as usize
    }

    /// Longest token sequence the model accepts (its trained context, 512 for MiniLM); longer
    /// texts are truncated to it, keeping the final separator token.
    pub fn max_tokens(&self) -> usize {
        (self.model.n_ctx_train() as usize).min(BATCH_TOKENS)
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
        let mut out = Vec::with_capacity(texts.len());
        let mut start = 0;
        while start < tokenized.len() {
            let mut end = start;
            let mut used = 0;
            while end < tokenized.len() && end - start < MAX_TEXTS_PER_BATCH {
                let slot = slot_len(tokenized[end].len());
                if used + slot > BATCH_TOKENS {
                    break;
                }
                used += slot;
                end += 1;
            }
            out.extend(self.encode_group(&tokenized[start..end], used)?);
            start = end;
        }
        Ok(out)
    }

    fn tokenize(&self, index: usize, text: &str) -> Result<Vec<LlamaToken>, CoreError> {
        // With special tokens: [CLS] text [SEP].
        let mut tokens = self.model.vocab().tokenize(text.as_bytes(), true, false);
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

    /// Encodes one llama.cpp batch of `total` slot tokens and pools every text's vector.
    fn encode_group(
        &self,
        group: &[Vec<LlamaToken>],
        total: usize,
    ) -> Result<Vec<Vec<f32>>, CoreError> {
        // One fixed shape for every batch (creating it takes <1 ms). Sizing n_batch and
        // n_seq_max to each batch instead made llama.cpp abort (GGML_ASSERT in its mean
        // pooling's mat-mul) on some batch compositions; llama.cpp also aborts unless
        // n_batch >= n_seq_max (512 >= 128 here).
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(BATCH_TOKENS as u32))
            .with_n_batch(BATCH_TOKENS as u32)
            .with_n_ubatch(BATCH_TOKENS as u32)
            .with_n_seq_max((2 * MAX_TEXTS_PER_BATCH) as u32)
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean)
            .with_flash_attention_policy(FLASH_ATTN_DISABLED)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut ctx = self
            .model
            .new_context(backend()?, params)
            .map_err(|e| CoreError::Context(e.to_string()))?;
        let pad = LlamaToken(0);
        let mut batch = LlamaBatch::new(total, 1);
        for (i, tokens) in group.iter().enumerate() {
            let text_seq = 2 * i as i32;
            for (pos, tok) in tokens.iter().enumerate() {
                batch.add(*tok, pos as i32, &[text_seq], true).map_err(decode_err)?;
            }
            for pos in 0..slot_len(tokens.len()) - tokens.len() {
                // Every token is an output: llama.cpp's mean pooling multiplies the output rows
                // by a matrix with one row per token, and aborts when the two disagree.
                batch.add(pad, pos as i32, &[text_seq + 1], true).map_err(decode_err)?;
            }
        }
        ctx.encode(&mut batch).map_err(decode_err)?;

        (0..group.len())
            .map(|i| {
                let mean = ctx.embeddings_seq_ith(2 * i as i32).map_err(decode_err)?;
                Ok(normalize(mean))
            })
            .collect()
    }
}

/// Slot length of a text of `n` tokens: `n` rounded up to [`SLOT_ALIGN`].
pub(crate) fn slot_len(n: usize) -> usize {
    n.div_ceil(SLOT_ALIGN) * SLOT_ALIGN
}

/// `v` scaled to unit L2 norm, computed in f64 in a fixed order (a zero vector stays zero).
fn normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    v.iter().map(|&x| (f64::from(x) * scale) as f32).collect()
}

fn decode_err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Decode(e.to_string())
}

/// Cosine similarity of two vectors (dot product over the product of norms).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb)) as f32
}

/// pgvector's text form of a vector, `[x,y,…]`, each component in Rust's shortest
/// round-trip decimal form (so parsing it back gives the same f32 bits).
pub fn pgvector_text(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 12 + 2);
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&x.to_string());
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned() {
        assert_eq!(slot_len(3), 32);
        assert_eq!(slot_len(32), 32);
        assert_eq!(slot_len(33), 64);
    }

    #[test]
    fn vectors_are_normalised() {
        assert_eq!(normalize(&[3.0, 4.0]), vec![0.6, 0.8]);
        assert_eq!(normalize(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn pgvector_text_round_trips() {
        let v = [0.1f32, -2.5e-7, 1.0, 0.067_656_87];
        let text = pgvector_text(&v);
        assert!(text.starts_with("[0.1,-0.00000025,1,") && text.ends_with(']'), "{text}");
        let back: Vec<f32> =
            text[1..text.len() - 1].split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(back, v);
        assert_eq!(pgvector_text(&[]), "[]");
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-7);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-7);
    }
}
