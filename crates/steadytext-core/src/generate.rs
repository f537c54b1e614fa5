//! Deterministic greedy text generation.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::backend::backend;
use crate::CoreError;

/// Context window used for every generation request. Fixed, so that the shape of the KV cache
/// never depends on the request (one of the determinism conditions).
pub const N_CTX: u32 = 4096;

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
}

/// A loaded generation model.
pub struct Generator {
    model: LlamaModel,
    path: PathBuf,
    threads: i32,
}

impl Generator {
    /// Loads a GGUF model from `path`, running on `threads` CPU threads.
    pub fn load(path: &Path, threads: usize) -> Result<Self, CoreError> {
        if !path.exists() {
            return Err(CoreError::ModelMissing { path: path.to_owned() });
        }
        let model = LlamaModel::load_from_file(backend()?, path, &LlamaModelParams::default())
            .map_err(|e| CoreError::ModelLoad { path: path.to_owned(), reason: e.to_string() })?;
        Ok(Self { model, path: path.to_owned(), threads: threads.clamp(1, 256) as i32 })
    }

    /// The model file this generator was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Generates a completion of `req.prompt` by greedy decoding in a fresh context.
    pub fn generate(&self, req: &GenerateRequest) -> Result<String, CoreError> {
        let vocab = self.model.vocab();
        let prompt = vocab.tokenize(req.prompt.as_bytes(), true, false);
        if prompt.is_empty() {
            return Err(CoreError::Prompt("prompt produced no tokens".into()));
        }
        if prompt.len() + req.max_tokens as usize > N_CTX as usize {
            return Err(CoreError::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens: req.max_tokens,
                n_ctx: N_CTX,
            });
        }
        let mut ctx = self.new_context()?;
        let mut batch = LlamaBatch::new(PROMPT_CHUNK, 1);
        let mut pos: i32 = 0;
        for chunk in prompt.chunks(PROMPT_CHUNK) {
            batch.clear();
            for (i, tok) in chunk.iter().enumerate() {
                let last = pos as usize + i + 1 == prompt.len();
                batch.add(*tok, pos + i as i32, &[0], last).map_err(decode_err)?;
            }
            ctx.decode(&mut batch).map_err(decode_err)?;
            pos += chunk.len() as i32;
        }

        let mut out = Vec::new();
        let mut logits_index = batch.n_tokens() - 1;
        for _ in 0..req.max_tokens {
            let token = greedy(ctx.get_logits_ith(logits_index));
            if vocab.is_eog(token) {
                break;
            }
            vocab.token_to_piece_into(token, &mut out, false, None);
            batch.clear();
            batch.add(token, pos, &[0], true).map_err(decode_err)?;
            ctx.decode(&mut batch).map_err(decode_err)?;
            pos += 1;
            logits_index = 0;
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn new_context(&self) -> Result<LlamaContext<'_>, CoreError> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(N_CTX))
            .with_n_batch(PROMPT_CHUNK as u32)
            .with_n_ubatch(PROMPT_CHUNK as u32)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        self.model
            .new_context(backend()?, params)
            .map_err(|e| CoreError::Context(e.to_string()))
    }
}

fn decode_err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Decode(e.to_string())
}

/// Index of the largest logit; ties go to the lowest token id, so the choice never depends on
/// iteration order.
fn greedy(logits: &[f32]) -> LlamaToken {
    let mut best = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    LlamaToken(best as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_max_and_breaks_ties_low() {
        assert_eq!(greedy(&[0.1, 0.9, 0.3]), LlamaToken(1));
        assert_eq!(greedy(&[0.5, 0.9, 0.9, 0.2]), LlamaToken(1));
        assert_eq!(greedy(&[-1.0, -3.0]), LlamaToken(0));
    }

    #[test]
    fn missing_model_is_a_typed_error() {
        let err = Generator::load(Path::new("/nonexistent/model.gguf"), 1).err().unwrap();
        assert!(matches!(err, CoreError::ModelMissing { .. }), "{err}");
    }
}
