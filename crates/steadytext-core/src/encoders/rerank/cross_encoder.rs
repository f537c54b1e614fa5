//! The cross-encoder method: a BERT-family model with a rank head scores `BOS query EOS SEP
//! document EOS`, pairs batched in aligned slots as embeddings are.

use llama_cpp_2::token::LlamaToken;

use super::ModelReranker;
use crate::error::decode_err;
use crate::slots::MAX_SEQ_TOKENS;
use crate::CoreError;

impl ModelReranker {
    /// The token ids a cross-encoder is fed for one (query, document) pair (for inspection).
    pub fn pair_tokens(&self, query: &str, document: &str) -> Result<Vec<i32>, CoreError> {
        let vocab = self.model().vocab();
        let q = vocab.tokenize(query.as_bytes(), false, false);
        let d = vocab.tokenize(document.as_bytes(), false, false);
        let max = (self.model().n_ctx_train() as usize).min(MAX_SEQ_TOKENS);
        Ok(self.pair(&q, &d, max)?.into_iter().map(|t| t.0).collect())
    }

    pub(super) fn cross_encoder_scores(
        &self,
        query: &str,
        documents: &[&str],
    ) -> Result<Vec<f64>, CoreError> {
        let vocab = self.model().vocab();
        let q = vocab.tokenize(query.as_bytes(), false, false);
        if q.is_empty() {
            return Err(CoreError::EmptyQuery);
        }
        let max = (self.model().n_ctx_train() as usize).min(MAX_SEQ_TOKENS);
        let pairs = documents
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let d = vocab.tokenize(d.as_bytes(), false, false);
                if d.is_empty() {
                    return Err(CoreError::EmptyDocument { index });
                }
                self.pair(&q, &d, max)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.encoder.encode(&pairs, |ctx, seq| {
            let out = ctx.embeddings_seq_ith(seq).map_err(decode_err)?;
            out.first()
                .map(|&s| f64::from(s))
                .ok_or_else(|| CoreError::Decode("the rank head produced no score".into()))
        })
    }

    /// `BOS query EOS [SEP] document EOS`, EOS falling back to SEP (BERT), truncated to `max`
    /// tokens (the query to half of it, then the document).
    fn pair(
        &self,
        query: &[LlamaToken],
        doc: &[LlamaToken],
        max: usize,
    ) -> Result<Vec<LlamaToken>, CoreError> {
        let vocab = self.model().vocab();
        let null = LlamaToken(-1);
        let (bos, eos, sep) = (vocab.bos(), vocab.eos(), vocab.sep());
        let end = if eos != null { eos } else { sep };
        if end == null {
            return Err(self.unsupported("the vocabulary has neither an EOS nor a SEP token"));
        }
        let mut out = Vec::with_capacity(max);
        if vocab.should_add_bos() && bos != null {
            out.push(bos);
        }
        out.extend_from_slice(&query[..query.len().min(max / 2)]);
        out.push(end);
        if eos != null && sep != null {
            out.push(sep);
        }
        let room = max.saturating_sub(out.len() + 1);
        out.extend_from_slice(&doc[..doc.len().min(room)]);
        out.push(end);
        Ok(out)
    }
}
