//! A loaded generation model ([`Generator`]) and what a request to it is: the model, its
//! contexts, its tokenizer, chat template and constraint environment, and the limits of the
//! context window. Decoding is [`crate::decode_batch`]'s; the `generate*` front ends are in
//! [`crate::generate`].

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

    /// The tokens a prompt is decoded from: the beginning-of-sequence token, then the text's,
    /// control tokens written in it read as such when `special_tokens`.
    pub(crate) fn tokenize_prompt(&self, prompt: &str, special_tokens: bool) -> Vec<LlamaToken> {
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
    pub(crate) fn guide(
        &self,
        constraint: &Constraint,
        max_tokens: u32,
    ) -> Result<Guide, CoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
