//! Deterministic greedy text generation, free or constrained.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::backend::{backend, load_model};
use crate::chat::{ChatMessage, ChatTemplate};
use crate::decode_batch::{Caller, DecodeBatch, Sequence};
use crate::error::decode_err;
use crate::guide::{Guidance, Guide};
use crate::threads::ThreadPolicy;
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
pub(crate) const PROMPT_CHUNK: usize = 512;

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
    /// Whether control tokens written in the prompt (e.g. `<start_of_turn>`) are read as
    /// such: true for a prompt rendered by [`Generator::chat_prompt`], false for a plain prompt
    /// (completed as literal text).
    pub special_tokens: bool,
}

/// One finished generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generated text (lossy UTF-8 of the generated token bytes).
    pub text: String,
    /// Number of tokens generated (end-of-generation tokens not counted).
    pub tokens: u32,
    /// Number of prompt tokens decoded (with the beginning-of-sequence token).
    pub prompt_tokens: u32,
}

/// A loaded generation model.
pub struct Generator {
    model: LlamaModel,
    path: PathBuf,
    threads: ThreadPolicy,
    /// Whether every step with a single live sequence needs a companion row, because this
    /// model's single-row products round differently from its multi-row ones (measured at
    /// load by [`Generator::single_row_kernels_differ`]).
    companion_always: bool,
    /// The llguidance view of the vocabulary, built by the first constrained request.
    guidance: OnceLock<Result<Guidance, String>>,
    /// The chat template, chosen by the first chat request (or why there is none).
    chat: OnceLock<Result<ChatTemplate, String>>,
}

impl Generator {
    /// Loads a GGUF model from `path`, decoding on `threads` CPU threads (a count, or a
    /// [`ThreadPolicy`]).
    pub fn load(path: &Path, threads: impl Into<ThreadPolicy>) -> Result<Self, CoreError> {
        let model = load_model(path)?;
        let mut generator = Self {
            model,
            path: path.to_owned(),
            threads: threads.into(),
            companion_always: true,
            guidance: OnceLock::new(),
            chat: OnceLock::new(),
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
        let mut ctx = self.new_context(2, prompt.len(), self.threads.now())?;
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

    /// How many threads this generator decodes with.
    pub fn thread_policy(&self) -> ThreadPolicy {
        self.threads
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
    ///
    /// A thin wrapper over [`DecodeBatch`]: a context with one stream per valid request, sized
    /// to the longest; every prompt is prefilled (one by one), then all decode together until
    /// the last one ends.
    pub fn generate_batch_while(
        &self,
        reqs: &[GenerateRequest],
        keep: &dyn Fn(usize) -> bool,
    ) -> Result<Vec<Result<Generation, CoreError>>, CoreError> {
        let mut results: Vec<Option<Result<Generation, CoreError>>> =
            Vec::with_capacity(reqs.len());
        let mut valid = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            match self.prepare(req, N_CTX as usize) {
                Ok(seq) => {
                    results.push(None);
                    valid.push((i, seq));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let longest = valid.iter().map(|(_, q)| q.prompt.len() + q.max_tokens as usize).max();
        if let Some(longest) = longest {
            let mut batch = DecodeBatch::new(self, valid.len(), longest)?;
            let mut finished = Vec::new();
            for (index, seq) in valid {
                finished.extend(batch.admit_prepared(seq, Indexed { index, keep }));
            }
            while !batch.is_empty() {
                finished.extend(batch.step());
            }
            for (caller, result) in finished {
                results[caller.index] = Some(result);
            }
        }
        Ok(results.into_iter().map(|r| r.expect("every request answered")).collect())
    }

    /// A long-lived decoding context for continuous batching: up to `capacity` generations
    /// decoded together, each of up to [`N_CTX`] positions, joining and leaving at any step.
    ///
    /// Its streams hold [`N_CTX`] cells each, whatever the request; that changes no output
    /// (see [`Generator::new_context`]: the attended length and the cell layout do not depend
    /// on the stream size, and cells left by an earlier request of a reused stream are masked,
    /// as the zeroed cells of a fresh context are). KV memory is `capacity + 1` times a 4096-cell
    /// stream (for Gemma 3 270M about 28 MiB per stream: 3 global-attention layers of 4096
    /// cells, 15 sliding-window layers of 1024).
    pub fn decode_batch<C: Caller>(
        &self,
        capacity: usize,
    ) -> Result<DecodeBatch<'_, C>, CoreError> {
        DecodeBatch::new(self, capacity, N_CTX as usize)
    }

    /// Tokenizes and checks `req` for a stream of `positions` cells: a non-empty prompt that
    /// fits with its `max_tokens`, a valid constraint.
    pub(crate) fn prepare(
        &self,
        req: &GenerateRequest,
        positions: usize,
    ) -> Result<Sequence, CoreError> {
        let prompt = self.tokenize_prompt(&req.prompt, req.special_tokens);
        if prompt.is_empty() {
            return Err(CoreError::Prompt("prompt produced no tokens".into()));
        }
        let n_ctx = positions.min(N_CTX as usize);
        if prompt.len() + req.max_tokens as usize > n_ctx {
            return Err(CoreError::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens: req.max_tokens,
                n_ctx: n_ctx as u32,
            });
        }
        let guide = req.constraint.as_ref().map(|c| self.guide(c, req.max_tokens)).transpose()?;
        Ok(Sequence::new(prompt, req.max_tokens, guide))
    }

    /// The tokens a prompt is decoded from: the beginning-of-sequence token, then the text's,
    /// control tokens written in it read as such when `special_tokens`.
    fn tokenize_prompt(&self, prompt: &str, special_tokens: bool) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(prompt.as_bytes(), true, special_tokens)
    }

    /// How many tokens a prompt is decoded from (as [`Generation::prompt_tokens`] counts
    /// them; `special_tokens` as in [`GenerateRequest`]), without decoding it.
    pub fn count_prompt_tokens(&self, prompt: &str, special_tokens: bool) -> u32 {
        self.tokenize_prompt(prompt, special_tokens).len() as u32
    }

    /// How many tokens `text` tokenizes to as plain text (no beginning-of-sequence token); for
    /// a cached output this is the count of its text, which may differ from the count decoded.
    pub fn count_text_tokens(&self, text: &str) -> u32 {
        self.model.vocab().tokenize(text.as_bytes(), false, false).len() as u32
    }

    /// The prompt of a conversation in the model's chat template (see [`crate::chat`]): its
    /// own, else its family's; [`CoreError::NoChatTemplate`] says why there is none. Decode it
    /// with [`GenerateRequest::special_tokens`] set.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String, CoreError> {
        let name = self
            .path
            .file_name()
            .map_or_else(|| self.path.display().to_string(), |f| f.to_string_lossy().into_owned());
        let chosen = self.chat.get_or_init(|| match ChatTemplate::of(&self.model, &name) {
            Ok(t) => Ok(t),
            Err(CoreError::NoChatTemplate { reason, .. }) => Err(reason),
            Err(e) => Err(e.to_string()),
        });
        match chosen {
            Ok(template) => template.apply(&self.model, messages),
            Err(reason) => Err(CoreError::NoChatTemplate { model: name, reason: reason.clone() }),
        }
    }

    /// The loaded llama.cpp model.
    pub(crate) fn model(&self) -> &LlamaModel {
        &self.model
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
    /// (prompt plus generated), computing on `threads` threads.
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
    pub(crate) fn new_context(
        &self,
        n_seq: u32,
        positions: usize,
        threads: i32,
    ) -> Result<LlamaContext<'_>, CoreError> {
        let cells = (positions as u32).div_ceil(KV_PAD).max(1) * KV_PAD;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells * n_seq))
            .with_n_seq_max(n_seq)
            .with_kv_unified(false)
            .with_n_batch(PROMPT_CHUNK as u32)
            .with_n_ubatch(PROMPT_CHUNK as u32)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        self.model.new_context(backend()?, params).map_err(|e| CoreError::Context(e.to_string()))
    }
}

/// The caller of one request of [`Generator::generate_batch_while`]: its index and the keep
/// predicate.
struct Indexed<'k> {
    index: usize,
    keep: &'k dyn Fn(usize) -> bool,
}

impl Caller for Indexed<'_> {
    fn wanted(&self) -> bool {
        (self.keep)(self.index)
    }
}

/// Index of the largest logit; ties go to the lowest token id, so the choice never depends on
/// iteration order (NaN logits are never chosen; all-NaN or empty logits give token 0).
///
/// See [`argmax`] for how it is computed.
pub(crate) fn greedy(logits: &[f32]) -> LlamaToken {
    LlamaToken(argmax(logits).unwrap_or(0) as i32)
}

/// The first index of the largest logit, `None` when there is none (empty or all NaN); the
/// choice of greedy decoding, constrained or not.
///
/// Two passes the compiler vectorises, over a vocabulary of up to 262 144 logits per step and
/// sequence: the largest value in 8 independent lanes (the maximum does not depend on the order
/// of comparisons), then the first index holding it.
pub(crate) fn argmax(logits: &[f32]) -> Option<usize> {
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
    logits.iter().position(|&l| l == max)
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
