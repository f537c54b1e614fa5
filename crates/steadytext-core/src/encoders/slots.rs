//! Aligned-slot batches for the encoder models (sentence embeddings, cross-encoders): many token
//! sequences encoded in one llama.cpp call, each giving bit-identical outputs whether it is
//! encoded alone or next to any other sequences.
//!
//! # How batching stays bit-identical
//!
//! llama.cpp encodes a whole batch as one ubatch: every sequence is a block of rows in the same
//! attention matrix, and other sequences are masked with `-inf`. The masked entries contribute
//! exact zeros, but the SIMD kernels add numbers in groups of lanes, so the *rounding* of a
//! sequence's sums could depend on where its tokens sit in the batch. Two settings make the
//! computation independent of the neighbours (both measured with the tests
//! `batching_never_changes_a_vector` and `cross_encoder_scores_do_not_depend_on_the_batch`):
//!
//! * every sequence occupies a slot whose start and length are multiples of [`SLOT_ALIGN`]
//!   tokens (the remainder is filled with padding tokens in a separate, discarded sequence), so
//!   its non-zero terms fall in the same lanes and groups whatever precedes or follows it. A
//!   slot always holds at least one padding token, so every batch has two or more sequences:
//!   the pooling and classification products have one row per sequence, and with a single row
//!   ggml would compute them with `vec_dot_f32` instead of llamafile's tinyBLAS
//!   (`.cargo/config.toml`), which sums in a different order. Packed back to back (alignment 1),
//!   a sequence differs from its alone output as soon as it has one neighbour. With tinyBLAS
//!   (8-lane steps) an alignment of 8 passes the tests, and the vectors are bit-identical to
//!   those of 32-token slots; measured with llamafile off (every product on `vec_dot_f32`,
//!   which steps 32 elements: 4 accumulators × 8 lanes), 8 and 16 failed and 32 was needed;
//! * flash attention is disabled: llama.cpp's CPU flash-attention kernel switches to a tiled
//!   variant once a batch has 64 or more tokens, which regroups the sums by batch size
//!   (enabled, the tests fail even with aligned slots).

use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::backend::backend;
use crate::error::decode_err;
use crate::threads::{set_context_threads, ThreadPolicy};
use crate::CoreError;

/// Alignment (in tokens) of every sequence's slot in a batch: the widest grouping of the
/// kernels that sum over tokens (tinyBLAS's and the softmax's 8 f32 lanes).
pub const SLOT_ALIGN: usize = 8;

/// Most tokens (slots included) encoded in one llama.cpp batch: the context's capacity, which
/// bounds the longest sequence.
pub const BATCH_TOKENS: usize = 512;

/// Slot tokens packed into one llama.cpp batch before the next batch starts (a longer sequence
/// gets a batch of its own). Every row of a batch attends over all the batch's rows, the other
/// sequences masked, so the attention products and softmax of each sequence grow with the
/// batch's size; small batches waste less. Measured with `steadytext bench` (32 texts in slots
/// of 16–24 tokens, 2 threads, 2–5 runs per budget), with a fresh context per call:
/// embeddings/s at batch 32 were 76 (budget 512), 96–100 (256), 118–132 (128), 123–151 (64),
/// 99–110 (32), against 58–68 one by one; below 64 the fixed cost of a llama.cpp call
/// dominates. Re-measured with the [`Encoder`]'s kept context: 115–140 (128) and 97–108 (64).
pub const PACK_TOKENS: usize = 128;

/// Longest sequence accepted: one that fills a batch with its slot (one padding token).
pub const MAX_SEQ_TOKENS: usize = BATCH_TOKENS - 1;

/// Most sequences in one llama.cpp batch (each uses two sequence ids: its own and its
/// padding's; llama.cpp allows 256).
pub const MAX_TEXTS_PER_BATCH: usize = 64;

// llama.cpp aborts unless n_batch >= n_seq_max (two sequence ids per text).
const _: () = assert!(BATCH_TOKENS >= 2 * MAX_TEXTS_PER_BATCH);

/// `LLAMA_FLASH_ATTN_TYPE_DISABLED` of llama.h (llama-cpp-2 takes the raw enum value).
const FLASH_ATTN_DISABLED: i32 = 0;

/// The padding token (its value does not matter: it is in a discarded sequence).
const PAD: LlamaToken = LlamaToken(0);

/// Slot length of a sequence of `n` tokens: `n + 1` (at least one padding token) rounded up to
/// [`SLOT_ALIGN`].
pub fn slot_len(n: usize) -> usize {
    (n + 1).div_ceil(SLOT_ALIGN) * SLOT_ALIGN
}

/// Splits sequences of the given lengths, in order, into batches of at most
/// [`MAX_TEXTS_PER_BATCH`] sequences and [`PACK_TOKENS`] slot tokens, or a single sequence of
/// up to [`BATCH_TOKENS`]. Every length must be at most [`MAX_SEQ_TOKENS`].
pub fn plan(lens: &[usize]) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < lens.len() {
        let (mut end, mut used) = (start, 0);
        while end < lens.len() && end - start < MAX_TEXTS_PER_BATCH {
            let slot = slot_len(lens[end]);
            if end > start && used + slot > PACK_TOKENS {
                break;
            }
            used += slot;
            end += 1;
        }
        assert!(used <= BATCH_TOKENS, "a sequence of {} tokens exceeds the batch", lens[start]);
        groups.push(start..end);
        start = end;
    }
    groups
}

self_cell::self_cell!(
    /// An encoder model and the context it keeps for its next call.
    struct ModelAndSpare {
        owner: LlamaModel,
        #[not_covariant]
        dependent: Spare,
    }
);

/// The context an [`Encoder`] keeps between calls, with the thread count it computes with;
/// empty before the first call and while a call uses it.
type Spare<'model> = Mutex<Option<(LlamaContext<'model>, i32)>>;

/// An encoder model (sentence embeddings, cross-encoder) that encodes token sequences in
/// aligned-slot batches, reusing one llama.cpp context from call to call.
///
/// Creating a context (and freeing it) took 3–23 ms per call, measured with one text per call
/// (`steadytext bench`'s `embed_batch1`), as long as encoding a 16-token text (7–10 ms). Every
/// call has the same context shape, and an encoder keeps no state between calls (BERT-family
/// models have no KV cache: each batch's attention covers only that batch; any other cache is
/// cleared first), so a reused context computes exactly what a fresh one does (tested). A call that finds the context in use by another thread creates
/// its own, and the context of a failed call is dropped.
pub struct Encoder {
    cell: ModelAndSpare,
    threads: ThreadPolicy,
    pooling: LlamaPoolingType,
    /// Contexts created so far.
    created: AtomicU64,
}

impl Encoder {
    /// Wraps `model`, to be run on `threads` CPU threads (before each call, an adaptive policy
    /// chooses again; outputs do not depend on it) with the given pooling.
    pub fn new(model: LlamaModel, threads: ThreadPolicy, pooling: LlamaPoolingType) -> Self {
        let cell = ModelAndSpare::new(model, |_| Mutex::new(None));
        Self { cell, threads, pooling, created: AtomicU64::new(0) }
    }

    /// How many llama.cpp contexts this encoder has created (one, unless calls overlapped or
    /// failed).
    pub fn contexts_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// How many CPU threads the model runs on.
    pub fn threads(&self) -> ThreadPolicy {
        self.threads
    }

    /// The model.
    pub fn model(&self) -> &LlamaModel {
        self.cell.borrow_owner()
    }

    /// Encodes `seqs` (each at most [`MAX_SEQ_TOKENS`] tokens) in aligned-slot batches and
    /// returns `read(ctx, i)` for sequence `i` of each batch, in input order.
    pub fn encode<T>(
        &self,
        seqs: &[Vec<LlamaToken>],
        read: impl FnMut(&LlamaContext<'_>, i32) -> Result<T, CoreError>,
    ) -> Result<Vec<T>, CoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        self.cell.with_dependent(|model, spare| {
            let kept = spare.lock().unwrap_or_else(PoisonError::into_inner).take();
            let threads = self.threads.now();
            let (mut ctx, mut current) = match kept {
                Some((mut ctx, current)) => {
                    // BERT-family encoders have no KV cache (a no-op then); an encoder
                    // architecture with one starts from an empty one, as in a fresh context
                    ctx.clear_kv_cache();
                    (ctx, current)
                }
                None => (self.new_context(model, threads)?, threads),
            };
            if current != threads && set_context_threads(&mut ctx, current, threads) {
                current = threads;
            }
            let out = encode_batches(&mut ctx, seqs, read)?;
            *spare.lock().unwrap_or_else(PoisonError::into_inner) = Some((ctx, current));
            Ok(out)
        })
    }

    /// A context of the one shape every batch uses. Sizing n_batch and n_seq_max to each batch
    /// instead made llama.cpp abort (GGML_ASSERT in its mean pooling's mat-mul) on some batch
    /// compositions.
    fn new_context<'m>(
        &self,
        model: &'m LlamaModel,
        threads: i32,
    ) -> Result<LlamaContext<'m>, CoreError> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(BATCH_TOKENS as u32))
            .with_n_batch(BATCH_TOKENS as u32)
            .with_n_ubatch(BATCH_TOKENS as u32)
            .with_n_seq_max((2 * MAX_TEXTS_PER_BATCH) as u32)
            .with_embeddings(true)
            .with_pooling_type(self.pooling)
            .with_flash_attention_policy(FLASH_ATTN_DISABLED)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        self.created.fetch_add(1, Ordering::Relaxed);
        model.new_context(backend()?, params).map_err(|e| CoreError::Context(e.to_string()))
    }
}

/// Encodes `seqs` on `ctx`, one llama.cpp call per group of [`plan`], and returns
/// `read(ctx, i)` for sequence `i` of each batch, in input order.
fn encode_batches<T>(
    ctx: &mut LlamaContext<'_>,
    seqs: &[Vec<LlamaToken>],
    mut read: impl FnMut(&LlamaContext<'_>, i32) -> Result<T, CoreError>,
) -> Result<Vec<T>, CoreError> {
    let lens: Vec<usize> = seqs.iter().map(Vec::len).collect();
    let mut out = Vec::with_capacity(seqs.len());
    let mut batch = LlamaBatch::new(BATCH_TOKENS, 1);
    for group in plan(&lens) {
        batch.clear();
        for (i, tokens) in seqs[group.clone()].iter().enumerate() {
            let seq = 2 * i as i32;
            for (pos, tok) in tokens.iter().enumerate() {
                batch.add(*tok, pos as i32, &[seq], true).map_err(decode_err)?;
            }
            for pos in 0..slot_len(tokens.len()) - tokens.len() {
                // Every token is an output: llama.cpp's mean pooling multiplies the output rows
                // by a matrix with one row per token, and aborts when the two disagree.
                batch.add(PAD, pos as i32, &[seq + 1], true).map_err(decode_err)?;
            }
        }
        ctx.encode(&mut batch).map_err(decode_err)?;
        for i in 0..group.len() {
            out.push(read(ctx, 2 * i as i32)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned() {
        assert_eq!(slot_len(3), 8);
        assert_eq!(slot_len(7), 8);
        assert_eq!(slot_len(8), 16, "always at least one padding token");
        assert_eq!(slot_len(MAX_SEQ_TOKENS), BATCH_TOKENS);
    }

    #[test]
    fn plan_respects_both_limits_and_keeps_order() {
        assert_eq!(plan(&[]), Vec::<Range<usize>>::new());
        // 128 slot tokens per batch: 16 slots of 8 tokens
        assert_eq!(plan(&[3; 40]), vec![0..16, 16..32, 32..40]);
        // a longer sequence gets a batch of its own, up to 512 slot tokens: slots of 208, 304,
        // 16, 112 and 512 tokens
        assert_eq!(plan(&[200, 300, 9, 100, 511]), vec![0..1, 1..2, 2..4, 4..5]);
    }
}
