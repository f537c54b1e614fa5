//! Deterministic greedy text generation, free or constrained.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::backend::{backend, load_model, thread_count};
use crate::error::decode_err;
use crate::guide::{Guidance, Guide};
use crate::{Constraint, CoreError};

/// Longest prompt plus `max_tokens` of one generation request (the context window).
pub const N_CTX: u32 = 4096;

/// Granularity of llama.cpp's KV cache: it pads every stream's size and the attended KV length
/// to multiples of 256 cells.
const KV_PAD: u32 = 256;

/// Position from which a sequence decoded without neighbours gets a companion row (see
/// [`Generator::decode_loop`]). llama.cpp pads the attended KV length to a multiple of 256 cells,
/// and ggml's flash attention splits the KV of a single-stream, single-query step into one
/// chunk per thread once it spans 512 cells or more (its split-KV path), which regroups the
/// softmax sums by thread count and differs from the path taken when other sequences share the
/// step. Below 256 cells that path is never taken.
pub const SPLIT_KV_FREE_POSITIONS: i32 = 256;

/// The probe prompt with which [`Generator::load`] checks whether the model's single-row
/// matrix products round exactly like its multi-row ones.
const KERNEL_PROBE_PROMPT: &str = "The quick brown fox jumps over the lazy dog because";

/// Largest number of prompt tokens fed to llama.cpp in one decode call.
const PROMPT_CHUNK: usize = 512;

/// One generation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateRequest {
    /// The prompt, completed as is (no chat template).
    pub prompt: String,
    /// Upper bound on generated tokens; generation also stops at end-of-generation tokens.
    pub max_tokens: u32,
    /// Seed; greedy decoding does not consume randomness, but the seed is part of a request's
    /// identity (cache keys) and feeds any future sampling.
    pub seed: u32,
    /// What the output must be (JSON of a schema, a regex match, one of a list); `None` for
    /// free text.
    pub constraint: Option<Constraint>,
}

/// One finished generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generated text (lossy UTF-8 of the generated token bytes).
    pub text: String,
    /// Number of tokens generated (end-of-generation tokens not counted).
    pub tokens: u32,
}

/// A loaded generation model.
pub struct Generator {
    model: LlamaModel,
    path: PathBuf,
    threads: i32,
    /// Whether every step with a single live sequence needs a companion row, because this
    /// model's single-row products round differently from its multi-row ones (measured at
    /// load by [`Generator::single_row_kernels_differ`]).
    companion_always: bool,
    /// The llguidance view of the vocabulary, built by the first constrained request.
    guidance: OnceLock<Result<Guidance, String>>,
}

impl Generator {
    /// Loads a GGUF model from `path`, running on `threads` CPU threads.
    pub fn load(path: &Path, threads: usize) -> Result<Self, CoreError> {
        let model = load_model(path)?;
        let mut generator = Self {
            model,
            path: path.to_owned(),
            threads: thread_count(threads),
            companion_always: true,
            guidance: OnceLock::new(),
        };
        generator.companion_always = generator.single_row_kernels_differ()?;
        Ok(generator)
    }

    /// Whether steps with a single live sequence always decode a companion row (true when the
    /// model's single-row matrix products round differently from its multi-row ones).
    pub fn companion_always(&self) -> bool {
        self.companion_always
    }

    /// Decodes one step of a probe sequence twice, alone and with a companion row, and reports
    /// whether its logits differ in any bit.
    ///
    /// ggml computes a product with one row as matrix-vector products (`vec_dot`) and one with
    /// more rows through llamafile's tinyBLAS where that supports the weight type. For Q8_0 and
    /// Q5_0 the two kernels do the same arithmetic in the same order per output element, so the
    /// packaged Gemma model decodes alone exactly as in a batch (its K-quant weights always take
    /// `vec_dot`, see [`crate::kernels`]; measured by a test). For other weight types the two
    /// kernels may group their sums differently (ggml's `vec_dot_f32` keeps 4 accumulators,
    /// tinyBLAS one), and every single-sequence step of such a model gets a companion row. A
    /// differing accumulation order changes the rounding of nearly every one of the
    /// vocabulary's logits, so one probe step detects it. (The tiny F32 Qwen3 of the tests
    /// measured no difference either; why was not investigated.)
    fn single_row_kernels_differ(&self) -> Result<bool, CoreError> {
        let prompt = self.model.vocab().tokenize(KERNEL_PROBE_PROMPT.as_bytes(), true, false);
        let Some((&last, head)) = prompt.split_last() else {
            return Ok(true);
        };
        let mut ctx = self.new_context(2, prompt.len())?;
        let mut batch = LlamaBatch::new(PROMPT_CHUNK, 1);
        for (i, tok) in head.iter().enumerate() {
            batch.add(*tok, i as i32, &[0], false).map_err(decode_err)?;
        }
        ctx.decode(&mut batch).map_err(decode_err)?;
        let pos = head.len() as i32;
        let mut step = |companion: bool| -> Result<Vec<f32>, CoreError> {
            ctx.clear_kv_cache_seq(Some(0), Some(pos as u32), None).map_err(decode_err)?;
            ctx.clear_kv_cache_seq(Some(1), None, None).map_err(decode_err)?;
            batch.clear();
            batch.add(last, pos, &[0], true).map_err(decode_err)?;
            if companion {
                batch.add(self.model.vocab().bos(), 0, &[1], true).map_err(decode_err)?;
            }
            ctx.decode(&mut batch).map_err(decode_err)?;
            Ok(ctx.get_logits_ith(0).to_vec())
        };
        let alone = step(false)?;
        let paired = step(true)?;
        Ok(alone.iter().zip(&paired).any(|(a, b)| a.to_bits() != b.to_bits()))
    }

    /// The model file this generator was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Generates a completion of `req.prompt` by greedy decoding in a fresh context.
    pub fn generate(&self, req: &GenerateRequest) -> Result<String, CoreError> {
        let generation =
            self.generate_batch(std::slice::from_ref(req))?.pop().expect("one result per request");
        generation.map(|g| g.text)
    }

    /// Generates completions for several requests decoded together, one llama.cpp sequence
    /// each, in one fresh context. Each output is byte-identical to generating that request
    /// alone (tested), constrained or not. The outer error is a failure of the whole batch; the
    /// inner ones are per-request (e.g. a prompt too long for the context window, an invalid
    /// constraint — both refused before decoding — or a constraint unfinished at max_tokens).
    pub fn generate_batch(
        &self,
        reqs: &[GenerateRequest],
    ) -> Result<Vec<Result<Generation, CoreError>>, CoreError> {
        self.generate_batch_while(reqs, &|_| true)
    }

    /// [`Generator::generate_batch`], stopping request `i` with [`CoreError::Abandoned`] as
    /// soon as `keep(i)` turns false (checked before its prompt is fed and before every decode
    /// step), e.g. because its caller timed out. The other requests' outputs do not change.
    pub fn generate_batch_while(
        &self,
        reqs: &[GenerateRequest],
        keep: &dyn Fn(usize) -> bool,
    ) -> Result<Vec<Result<Generation, CoreError>>, CoreError> {
        let vocab = self.model.vocab();
        let mut results: Vec<Option<Result<Generation, CoreError>>> =
            Vec::with_capacity(reqs.len());
        let mut seqs: Vec<Sequence> = Vec::new();
        for (slot, req) in reqs.iter().enumerate() {
            let prompt = vocab.tokenize(req.prompt.as_bytes(), true, false);
            let check = if prompt.is_empty() {
                Err(CoreError::Prompt("prompt produced no tokens".into()))
            } else if prompt.len() + req.max_tokens as usize > N_CTX as usize {
                Err(CoreError::ContextOverflow {
                    prompt_tokens: prompt.len(),
                    max_tokens: req.max_tokens,
                    n_ctx: N_CTX,
                })
            } else {
                req.constraint.as_ref().map(|c| self.guide(c, req.max_tokens)).transpose()
            };
            match check {
                Err(e) => results.push(Some(Err(e))),
                Ok(guide) => {
                    results.push(None);
                    seqs.push(Sequence {
                        slot,
                        prompt,
                        max_tokens: req.max_tokens,
                        pos: 0,
                        next: None,
                        out: Vec::new(),
                        generated: 0,
                        done: req.max_tokens == 0,
                        guide,
                        error: None,
                    });
                }
            }
        }
        if !seqs.is_empty() {
            // one extra stream for the companion row of single-sequence steps
            let longest = seqs.iter().map(|q| q.prompt.len() + q.max_tokens as usize).max();
            let mut ctx = self.new_context(seqs.len() as u32 + 1, longest.unwrap_or(1))?;
            let mut batch = LlamaBatch::new(PROMPT_CHUNK.max(seqs.len()), 1);
            self.feed_prompts(&mut ctx, &mut batch, &mut seqs, keep)?;
            self.decode_loop(&mut ctx, &mut batch, &mut seqs, keep)?;
            for seq in seqs {
                let slot = seq.slot;
                results[slot] = Some(seq.finish());
            }
        }
        Ok(results.into_iter().map(|r| r.expect("every request answered")).collect())
    }

    /// Decodes each prompt on its own, in chunks of at most [`PROMPT_CHUNK`] tokens, exactly as
    /// when the request runs alone, and picks each sequence's first token.
    ///
    /// Determinism: prompts are not mixed into one decode call. llama.cpp splits a mixed batch
    /// into micro-batches with an equal number of tokens per sequence, so a prompt's tokens
    /// would be grouped differently depending on its neighbours' lengths, and ggml's CPU flash
    /// attention picks different kernels (tiled for ≥ 64 queries of a sequence, split-KV for a
    /// single query) from those group sizes. Measured: mixing prompts changed outputs in
    /// batches of 8; feeding them one by one keeps every batch byte-identical to running alone.
    fn feed_prompts(
        &self,
        ctx: &mut LlamaContext<'_>,
        batch: &mut LlamaBatch<'_>,
        seqs: &mut [Sequence],
        keep: &dyn Fn(usize) -> bool,
    ) -> Result<(), CoreError> {
        for (s, seq) in seqs.iter_mut().enumerate() {
            if !keep(seq.slot) {
                seq.fail(CoreError::Abandoned);
                continue;
            }
            let mut pos = 0usize;
            for chunk in seq.prompt.chunks(PROMPT_CHUNK) {
                batch.clear();
                for (i, tok) in chunk.iter().enumerate() {
                    let last = pos + i + 1 == seq.prompt.len();
                    batch.add(*tok, (pos + i) as i32, &[s as i32], last).map_err(decode_err)?;
                }
                ctx.decode(batch).map_err(decode_err)?;
                pos += chunk.len();
            }
            seq.pos = pos as i32;
            seq.choose(ctx.get_logits_ith(batch.n_tokens() - 1));
        }
        Ok(())
    }

    /// Greedy decoding of all sequences in lock-step: one llama.cpp decode call per step with
    /// one token of every live sequence.
    ///
    /// Determinism: a step with a single live sequence must compute that sequence exactly as
    /// a step shared with others would. It then also decodes a companion row (a BOS token at
    /// position 0 of the spare stream `seqs.len()`, whose cache is cleared before each step and
    /// whose logits are ignored) when the model's single-row products round differently from
    /// multi-row ones ([`Generator::companion_always`]), and from position
    /// [`SPLIT_KV_FREE_POSITIONS`] on, where ggml's flash attention would otherwise split a lone
    /// stream's KV by thread count. Steps shared by several sequences never take either path.
    fn decode_loop(
        &self,
        ctx: &mut LlamaContext<'_>,
        batch: &mut LlamaBatch<'_>,
        seqs: &mut [Sequence],
        keep: &dyn Fn(usize) -> bool,
    ) -> Result<(), CoreError> {
        let vocab = self.model.vocab();
        let companion = seqs.len() as i32;
        loop {
            let mut live: Vec<(usize, LlamaToken)> = Vec::new();
            for (s, seq) in seqs.iter_mut().enumerate() {
                if seq.done {
                    continue;
                }
                if !keep(seq.slot) {
                    seq.fail(CoreError::Abandoned);
                    continue;
                }
                let token = seq.next.take().expect("a pending token for every live sequence");
                if vocab.is_eog(token) {
                    if let Some(guide) = &mut seq.guide {
                        guide.end();
                    }
                    seq.done = true;
                    continue;
                }
                if let Some(guide) = &mut seq.guide {
                    if let Err(e) = guide.commit(token) {
                        seq.fail(e);
                        continue;
                    }
                }
                vocab.token_to_piece_into(token, &mut seq.out, false, None);
                seq.generated += 1;
                let complete = seq.guide.as_ref().is_some_and(Guide::is_complete);
                if complete || seq.generated >= seq.max_tokens {
                    seq.done = true;
                    continue;
                }
                live.push((s, token));
            }
            if live.is_empty() {
                return Ok(());
            }
            batch.clear();
            for &(s, token) in &live {
                batch.add(token, seqs[s].pos, &[s as i32], true).map_err(decode_err)?;
            }
            let needs_companion = match live.as_slice() {
                [(s, _)] => self.companion_always || seqs[*s].pos >= SPLIT_KV_FREE_POSITIONS,
                _ => false,
            };
            if needs_companion {
                ctx.clear_kv_cache_seq(Some(companion as u32), None, None).map_err(decode_err)?;
                batch.add(vocab.bos(), 0, &[companion], true).map_err(decode_err)?;
            }
            ctx.decode(batch).map_err(decode_err)?;
            for (i, &(s, _)) in live.iter().enumerate() {
                seqs[s].pos += 1;
                seqs[s].choose(ctx.get_logits_ith(i as i32));
            }
        }
    }

    /// A fresh guide for `constraint` within `max_tokens`, building the vocabulary's llguidance
    /// environment on first use.
    fn guide(&self, constraint: &Constraint, max_tokens: u32) -> Result<Guide, CoreError> {
        constraint.validate()?;
        match self.guidance.get_or_init(|| Guidance::new(&self.model).map_err(|e| e.to_string())) {
            Ok(guidance) => guidance.guide(constraint, max_tokens),
            Err(e) => Err(CoreError::Constraint(e.clone())),
        }
    }

    /// A fresh context for `n_seq` parallel sequences of at most `positions` tokens each
    /// (prompt plus generated).
    ///
    /// Determinism: the KV cache is *not* unified — every sequence gets its own stream laid out
    /// exactly as when it runs alone. In a unified cache a sequence's cells would interleave
    /// with its neighbours', which changes how attention sums are grouped into SIMD lanes and
    /// therefore the rounding of its logits.
    ///
    /// Each stream holds `positions` rounded up to [`KV_PAD`] cells, not a fixed [`N_CTX`]:
    /// creating (and zeroing) a 4096-cell cache took 126–152 ms per request, a fifth of a
    /// 16-token generation. The size does not change the computation. llama.cpp attends over
    /// `min(stream size, max(256, used cells rounded up to 256))` cells, the same whenever the
    /// stream holds every position; and a sequence never places more tokens than its positions,
    /// so cells are laid out the same in both caches (Gemma's sliding-window cache, at most
    /// 1024 cells, does not wrap either). The generation tests check outputs against each
    /// request alone and the published goldens.
    fn new_context(&self, n_seq: u32, positions: usize) -> Result<LlamaContext<'_>, CoreError> {
        let cells = (positions as u32).div_ceil(KV_PAD).max(1) * KV_PAD;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells * n_seq))
            .with_n_seq_max(n_seq)
            .with_kv_unified(false)
            .with_n_batch(PROMPT_CHUNK as u32)
            .with_n_ubatch(PROMPT_CHUNK as u32)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        self.model.new_context(backend()?, params).map_err(|e| CoreError::Context(e.to_string()))
    }
}

/// Decoding state of one request inside a batch.
struct Sequence {
    /// Index of the request in the caller's slice.
    slot: usize,
    prompt: Vec<LlamaToken>,
    max_tokens: u32,
    /// Position of the next token to decode.
    pos: i32,
    /// Token chosen from the latest logits, not yet emitted.
    next: Option<LlamaToken>,
    out: Vec<u8>,
    generated: u32,
    done: bool,
    /// Constraint state, for a constrained request.
    guide: Option<Guide>,
    /// A per-request failure during decoding; the sequence stops.
    error: Option<CoreError>,
}

impl Sequence {
    /// Picks the next token from `logits`: the largest logit, among the tokens the constraint
    /// allows for a constrained request.
    fn choose(&mut self, logits: &[f32]) {
        match &mut self.guide {
            None => self.next = Some(greedy(logits)),
            Some(guide) => match guide.choose(logits) {
                Ok(token) => self.next = Some(token),
                Err(e) => self.fail(e),
            },
        }
    }

    /// Stops the sequence with a per-request error.
    fn fail(&mut self, e: CoreError) {
        self.error = Some(e);
        self.next = None;
        self.done = true;
    }

    /// The request's result once decoding stopped.
    fn finish(self) -> Result<Generation, CoreError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(guide) = self.guide {
            guide.finish(self.max_tokens)?;
        }
        Ok(Generation {
            text: String::from_utf8_lossy(&self.out).into_owned(),
            tokens: self.generated,
        })
    }
}

/// Index of the largest logit; ties go to the lowest token id, so the choice never depends on
/// iteration order (NaN logits are never chosen; all-NaN or empty logits give token 0).
///
/// Two passes the compiler vectorises, over a vocabulary of up to 262 144 logits per step and
/// sequence: the largest value in 8 independent lanes (the maximum does not depend on the order
/// of comparisons), then the first index holding it.
fn greedy(logits: &[f32]) -> LlamaToken {
    const LANES: usize = 8;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &l) in lanes.iter_mut().zip(chunk) {
            if l > *lane {
                *lane = l;
            }
        }
    }
    let max = lanes.iter().chain(tail).fold(f32::NEG_INFINITY, |m, &l| if l > m { l } else { m });
    LlamaToken(logits.iter().position(|&l| l == max).unwrap_or(0) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_max_and_breaks_ties_low() {
        assert_eq!(greedy(&[0.1, 0.9, 0.3]), LlamaToken(1));
        assert_eq!(greedy(&[0.5, 0.9, 0.9, 0.2]), LlamaToken(1));
        assert_eq!(greedy(&[-1.0, -3.0]), LlamaToken(0));
        assert_eq!(greedy(&[]), LlamaToken(0));
        assert_eq!(greedy(&[f32::NAN, f32::NAN]), LlamaToken(0));
        assert_eq!(greedy(&[f32::NEG_INFINITY; 3]), LlamaToken(0));
    }

    #[test]
    fn greedy_matches_a_plain_scan_across_lanes_and_the_tail() {
        // the first index of the largest value, NaNs skipped
        fn plain(logits: &[f32]) -> LlamaToken {
            let mut best: Option<usize> = None;
            for (i, &l) in logits.iter().enumerate() {
                if !l.is_nan() && best.is_none_or(|b| l > logits[b]) {
                    best = Some(i);
                }
            }
            LlamaToken(best.unwrap_or(0) as i32)
        }
        let mut state = 7u32;
        for len in [1usize, 7, 8, 9, 31, 1000, 262_147] {
            // few distinct values, so that ties across lanes and with the tail are common
            let logits: Vec<f32> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    match state >> 28 {
                        0 => f32::NAN,
                        v => (v % 5) as f32 - 2.0,
                    }
                })
                .collect();
            assert_eq!(greedy(&logits), plain(&logits), "length {len}");
        }
        let mut tail_wins = vec![0.0f32; 19];
        tail_wins[17] = 1.0;
        assert_eq!(greedy(&tail_wins), LlamaToken(17));
        tail_wins[3] = 1.0;
        assert_eq!(greedy(&tail_wins), LlamaToken(3));
    }

    #[test]
    fn generator_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Generator>();
    }

    #[test]
    fn missing_model_is_a_typed_error() {
        let err = Generator::load(Path::new("/nonexistent/model.gguf"), 1).err().unwrap();
        assert!(matches!(err, CoreError::ModelMissing { .. }), "{err}");
    }
}
