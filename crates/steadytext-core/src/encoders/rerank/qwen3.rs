//! The Qwen3-Reranker method: a causal LM judges each (query, document) pair one at a time, the
//! score being P("yes") from its yes/no logits or its converted rank head.

use std::num::NonZeroU32;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::{ModelReranker, RerankerKind};
use crate::backend::backend;
use crate::error::decode_err;
use crate::CoreError;

/// Largest context used for Qwen3-Reranker pairs (upstream steadytext's window).
const QWEN3_MAX_CTX: u32 = 8192;
/// Tokens per llama.cpp decode call on the Qwen3 path.
const QWEN3_CHUNK: usize = 512;

const QWEN3_PREFIX: &str = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
const QWEN3_SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";

impl ModelReranker {
    /// P("yes") of the Qwen3-Reranker judgement of each document, one pair at a time in one
    /// context (of a fixed size, cleared between pairs, so a score never depends on the
    /// documents before it).
    pub(super) fn qwen3_scores(
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
