//! Constrained greedy decoding: llguidance token masks over the llama.cpp vocabulary.
//!
//! llguidance only restricts *which* tokens may come next; the choice among them stays ours
//! (the largest logit, ties to the lowest id), so a constrained request is exactly as
//! deterministic as an unconstrained one.

use std::sync::Arc;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llguidance::api::StopReason;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use crate::{Constraint, CoreError};

/// Compiles constraints into matchers over one model's vocabulary. Built once per model.
pub(crate) struct Guidance {
    factory: ParserFactory,
}

impl Guidance {
    /// Builds the llguidance tokenizer environment from the model's vocabulary: every token
    /// id's raw bytes as generation emits them; tokens that render as nothing (control tokens)
    /// are recorded with llguidance's special-token marker so no grammar can produce them; all
    /// end-of-generation tokens count as EOS.
    pub(crate) fn new(model: &LlamaModel) -> Result<Self, CoreError> {
        let vocab = model.vocab();
        let n_vocab = u32::try_from(vocab.n_tokens())
            .map_err(|_| CoreError::Constraint("model reports a negative vocabulary".into()))?;
        let eot = vocab.eot();
        let primary_eos = if eot.0 >= 0 { eot } else { vocab.eos() };
        let mut eos = vec![primary_eos.0 as u32];
        let mut words = Vec::with_capacity(n_vocab as usize);
        for id in 0..n_vocab {
            let token = LlamaToken(id as i32);
            if vocab.is_eog(token) && token != primary_eos {
                eos.push(id);
            }
            let bytes = vocab.token_to_piece(token, false, None);
            if bytes.is_empty() {
                let special = vocab.token_to_piece(token, true, None);
                if special.is_empty() {
                    words.push(Vec::new());
                } else {
                    let mut marked = Vec::with_capacity(special.len() + 1);
                    marked.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    marked.extend(special);
                    words.push(marked);
                }
            } else {
                words.push(bytes);
            }
        }
        let info = TokRxInfo::new(n_vocab, primary_eos.0 as u32);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| CoreError::Constraint(format!("llguidance setup: {e}")))?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// A fresh matcher for a validated `constraint`; a constraint llguidance cannot compile is
    /// the typed error of its kind ([`CoreError::InvalidSchema`], …).
    pub(crate) fn guide(&self, constraint: &Constraint) -> Result<Guide, CoreError> {
        let parser = self
            .factory
            .create_parser(constraint.grammar())
            .map_err(|e| constraint.compile_error(one_line(&e.to_string())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(constraint.compile_error(one_line(&e)));
        }
        Ok(Guide { matcher, ended_by_eos: false })
    }
}

/// The constraint state of one sequence being decoded.
pub(crate) struct Guide {
    matcher: Matcher,
    ended_by_eos: bool,
}

impl Guide {
    /// The allowed token with the largest logit (ties to the lowest id). May be an EOS token,
    /// which llguidance allows only where the output is complete.
    pub(crate) fn choose(&mut self, logits: &[f32]) -> Result<LlamaToken, CoreError> {
        let mask = self.matcher.compute_mask().map_err(matcher_err)?;
        greedy_allowed(logits, &mask)
            .ok_or_else(|| CoreError::Constraint("no token is allowed by the constraint".into()))
    }

    /// Records that `token` ends the output (an EOS token the matcher allowed).
    pub(crate) fn end(&mut self) {
        self.ended_by_eos = true;
    }

    /// Advances the matcher by the emitted `token` (exactly once per emitted token).
    pub(crate) fn commit(&mut self, token: LlamaToken) -> Result<(), CoreError> {
        self.matcher.consume_token(token.0 as u32).map_err(matcher_err)
    }

    /// Whether the constraint admits no further token (the output is complete).
    pub(crate) fn is_complete(&self) -> bool {
        self.ended_by_eos || self.matcher.is_stopped()
    }

    /// Checks, once decoding stopped, that the output satisfies the constraint.
    pub(crate) fn finish(mut self, max_tokens: u32) -> Result<(), CoreError> {
        if self.ended_by_eos {
            return Ok(());
        }
        match self.matcher.stop_reason() {
            StopReason::NoExtension | StopReason::NoExtensionBias | StopReason::EndOfSentence => {
                Ok(())
            }
            StopReason::NotStopped => {
                if self.matcher.is_accepting().map_err(matcher_err)? {
                    Ok(())
                } else {
                    Err(CoreError::ConstraintUnfinished { max_tokens })
                }
            }
            other => Err(CoreError::Constraint(format!(
                "llguidance stopped: {other}{}",
                self.matcher.get_error().map(|e| format!(": {}", one_line(&e))).unwrap_or_default()
            ))),
        }
    }
}

/// Index of the largest logit among the allowed tokens; ties go to the lowest token id, as in
/// unconstrained greedy decoding. `None` when nothing is allowed.
fn greedy_allowed(logits: &[f32], allowed: &SimpleVob) -> Option<LlamaToken> {
    let mut best: Option<usize> = None;
    allowed.iter_set_entries(|i| {
        if i >= logits.len() {
            return;
        }
        best = match best {
            Some(b) if logits[i] > logits[b] || (logits[i] == logits[b] && i < b) => Some(i),
            Some(b) => Some(b),
            None => Some(i),
        };
    });
    best.map(|i| LlamaToken(i as i32))
}

fn matcher_err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Constraint(one_line(&e.to_string()))
}

/// llguidance's multi-line diagnostics on one line (error messages travel as SQL errors).
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_allowed_ignores_disallowed_and_breaks_ties_low() {
        let logits = [5.0, 1.0, 3.0, 3.0, 9.0];
        let mut mask = SimpleVob::alloc(logits.len());
        assert_eq!(greedy_allowed(&logits, &mask), None);
        mask.allow_token(1);
        mask.allow_token(2);
        mask.allow_token(3);
        assert_eq!(greedy_allowed(&logits, &mask), Some(LlamaToken(2)));
        mask.allow_token(4);
        assert_eq!(greedy_allowed(&logits, &mask), Some(LlamaToken(4)));
    }

    #[test]
    fn one_line_joins_diagnostics() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
