//! Constrained greedy decoding: llguidance decides which tokens may come next, over the
//! llama.cpp vocabulary, within each request's token budget.
//!
//! llguidance only restricts *which* tokens may come next; the choice among them stays ours
//! (the largest logit, ties to the lowest id), so a constrained request is exactly as
//! deterministic as an unconstrained one.
//!
//! # Checking candidates before computing the mask
//!
//! The greedy choice needs only the first allowed token in greedy order, so [`Guide::choose`]
//! validates the highest-logit token (llguidance pushes its bytes through the parser, which
//! costs microseconds) and computes the mask (a walk of the vocabulary trie, 262 144 tokens for
//! Gemma 3) only when none of the [`TOP_K`] best is allowed; the first allowed token in greedy
//! order is the same either way (a unit test compares the two). Measured in a release build on
//! the project's 2-core machine (Gemma 3 270M, one thread, the extraction schema, 512 tokens):
//! llguidance's sliced masks took about 30 µs per step and a scalar greedy scan over the
//! vocabulary about 1 ms (hence the vectorised [`best_logit`](crate::generation::logits::best_logit)), both small next to a decode step
//! of about 40 ms; the mask was needed at 3 of 512 steps. Constrained decoding runs at the free
//! rate per token (`bench/run constrained`).
//!
//! # The token budget
//!
//! A small model left alone keeps writing inside an open JSON structure until `max_tokens` runs
//! out. The guide therefore knows its budget and counts the tokens it commits. At every step it
//! knows a completion of the output from its current state (the shortest byte string found by
//! [`closing::shortest_completion`], counted in tokens as the vocabulary's longest-match
//! tokenisation spells it) and admits a candidate only if the output can still be completed
//! within the budget after it: `need(after) ≤ max(remaining, need(now)) − 1`. The first token of
//! the known completion always qualifies, so the invariant "the known completion fits" holds at
//! every step once it holds at the start, and the output completes within `max_tokens` whenever
//! the completion found from the empty output fits. Among admitted candidates the choice is
//! still the greedy one: candidates are tried in greedy order (the [`TOP_K`] best, then up to
//! [`MASK_CANDIDATES`] more from the mask) and the first admitted one is taken; when none is, the
//! completion's first token is. Outputs that end well before the budget runs low never meet a
//! refusal, so they are byte-identical to decoding without a budget.
//!
//! The completion is searched for only when the state's structure changes: after a token that
//! is a prefix of the known completion, its rest is still a completion; after one that the known
//! completion still completes (say, more characters of an open string), the known one stays an
//! upper bound. Within [`SLACK`] tokens of the budget the guide searches afresh instead, so that
//! an outdated, longer completion does not refuse tokens the model could still afford.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llguidance::api::StopReason;
use llguidance::panic_utils;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie, TokenId};
use llguidance::{ParserFactory, TokenParser};

use crate::closing::{self, ByteTokens};
use crate::generation::logits::{best_logit, top_allowed, top_logits};
use crate::{Constraint, CoreError};

/// Highest-logit tokens checked one by one before the mask is computed.
const TOP_K: usize = 16;
/// Allowed tokens taken from the mask, in greedy order, when none of the [`TOP_K`] best is
/// allowed or admitted.
const MASK_CANDIDATES: usize = 16;
/// Candidates per step that may cost a completion search (each search is bounded by
/// [`closing::MAX_NODES`]); later candidates are admitted only by the cheap checks.
const SEARCHES_PER_STEP: u32 = 4;
/// Within this many tokens of needing the whole remaining budget, the completion is searched
/// afresh at every step rather than kept while it still works.
const SLACK: u32 = 8;
/// Tokens after which a search that gave up is tried again.
const RETRY_AFTER: u32 = 16;

/// Compiles constraints into parsers over one model's vocabulary. Built once per model.
pub(crate) struct Guidance {
    factory: ParserFactory,
    bytes: Arc<ByteTokens>,
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
        let bytes = Arc::new(ByteTokens::new(&trie));
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| CoreError::Constraint(format!("llguidance setup: {e}")))?;
        factory.quiet();
        Ok(Self { factory, bytes })
    }

    /// A fresh guide for a validated `constraint` and a budget of `max_tokens` tokens; a
    /// constraint llguidance cannot compile is the typed error of its kind
    /// ([`CoreError::InvalidSchema`], …).
    pub(crate) fn guide(
        &self,
        constraint: &Constraint,
        max_tokens: u32,
    ) -> Result<Guide, CoreError> {
        let mut parser = self
            .factory
            .create_parser(constraint.grammar())
            .map_err(|e| constraint.compile_error(one_line(&e.to_string())))?;
        if parser.is_fresh() {
            parser.start_without_prompt();
        }
        let eos = parser.token_env.tok_trie().eos_token();
        Ok(Guide {
            parser,
            bytes: Arc::clone(&self.bytes),
            eos,
            max_tokens,
            committed: 0,
            plan: Plan::Unknown,
            chosen: None,
            ended_by_eos: false,
            failed: None,
        })
    }
}

/// The constraint state of one sequence being decoded.
pub(crate) struct Guide {
    parser: TokenParser,
    bytes: Arc<ByteTokens>,
    /// The primary end-of-sequence token.
    eos: TokenId,
    max_tokens: u32,
    /// Tokens committed so far (end-of-generation tokens are not committed).
    committed: u32,
    /// A completion of the output from the parser's current state.
    plan: Plan,
    /// The token the last [`Guide::choose`] returned and the state it leads to.
    chosen: Option<Chosen>,
    ended_by_eos: bool,
    /// An llguidance failure (an error or a panic); the guide refuses further work.
    failed: Option<String>,
}

/// What the guide knows about completing the output from its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Not searched for since the last token.
    Unknown,
    /// The bytes of a completion and how many tokens spell them; `fresh` when this is what the
    /// search found from this very state, not a completion kept from an earlier one.
    Known { bytes: Vec<u8>, tokens: u32, fresh: bool },
    /// The search gave up when `at` tokens were committed.
    GaveUp { at: u32 },
}

/// A token returned by [`Guide::choose`], not yet committed.
struct Chosen {
    token: TokenId,
    /// The parser already consumed it (to search the completion after it).
    consumed: bool,
    /// The plan once it is committed.
    plan: Plan,
}

impl Guide {
    /// The token to emit next: the allowed token with the largest logit (ties to the lowest id)
    /// among those after which the output can still be completed within the budget (see the
    /// module documentation). May be an EOS token, which llguidance allows only where the
    /// output is complete.
    pub(crate) fn choose(&mut self, logits: &[f32]) -> Result<LlamaToken, CoreError> {
        self.guarded(|g| g.choose_token(logits)).map(|t| LlamaToken(t as i32))
    }

    /// Records that `token` ends the output (an EOS token the parser allowed).
    pub(crate) fn end(&mut self) {
        self.ended_by_eos = true;
        self.chosen = None;
    }

    /// Advances the parser by the emitted `token` (exactly once per emitted token).
    pub(crate) fn commit(&mut self, token: LlamaToken) -> Result<(), CoreError> {
        self.guarded(|g| g.commit_token(token.0 as TokenId))
    }

    /// Whether the constraint admits no further token (the output is complete).
    pub(crate) fn is_complete(&self) -> bool {
        self.ended_by_eos
            || self.failed.is_some()
            || self.parser.stop_reason() != StopReason::NotStopped
    }

    /// Checks, once decoding stopped, that the output satisfies the constraint.
    pub(crate) fn finish(mut self, max_tokens: u32) -> Result<(), CoreError> {
        if let Some(e) = self.failed {
            return Err(CoreError::Constraint(e));
        }
        if self.ended_by_eos {
            return Ok(());
        }
        match self.parser.stop_reason() {
            StopReason::NoExtension | StopReason::NoExtensionBias | StopReason::EndOfSentence => {
                Ok(())
            }
            StopReason::NotStopped => {
                if self.parser.is_accepting() {
                    Ok(())
                } else {
                    Err(CoreError::ConstraintUnfinished { max_tokens })
                }
            }
            other => Err(CoreError::Constraint(format!(
                "llguidance stopped: {other}{}",
                self.parser
                    .error_message()
                    .map(|e| format!(": {}", one_line(&e)))
                    .unwrap_or_default()
            ))),
        }
    }

    /// Runs `f`, turning llguidance errors and panics into [`CoreError::Constraint`]; after one,
    /// the guide refuses further work (its parser may be half-updated).
    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        if let Some(e) = &self.failed {
            return Err(CoreError::Constraint(e.clone()));
        }
        let result = match panic_utils::catch_unwind(AssertUnwindSafe(|| Ok(f(self)))) {
            Ok(result) => result,
            Err(panic) => Err(lg_err(panic)),
        };
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    fn choose_token(&mut self, logits: &[f32]) -> Result<TokenId, CoreError> {
        if let Some(prev) = self.chosen.take() {
            if prev.consumed {
                self.parser.rollback(1).map_err(lg_err)?;
            }
        }
        let remaining = self.max_tokens.saturating_sub(self.committed);
        if remaining > 0 {
            self.refresh_plan(remaining)?;
        }
        let mut candidates = Candidates::new(logits);
        let mut searches = SEARCHES_PER_STEP;
        let mut any = false;
        while let Some(token) = candidates.next(&mut self.parser)? {
            any = true;
            let admitted = if remaining == 0 {
                // never emitted (the budget is spent): no completion to protect
                Some(Chosen { token, consumed: false, plan: Plan::Unknown })
            } else {
                self.admit(token, remaining, &mut searches)?
            };
            if let Some(chosen) = admitted {
                self.chosen = Some(chosen);
                return Ok(token);
            }
        }
        if !any {
            return Err(CoreError::Constraint("no token is allowed by the constraint".into()));
        }
        let chosen = self.completion_step()?;
        let token = chosen.token;
        self.chosen = Some(chosen);
        Ok(token)
    }

    /// Makes sure the plan describes the current state: searches when it is unknown, when a
    /// kept completion is within [`SLACK`] of the budget, or [`RETRY_AFTER`] tokens after a
    /// search gave up.
    fn refresh_plan(&mut self, remaining: u32) -> Result<(), CoreError> {
        let search = match &self.plan {
            Plan::Unknown => true,
            Plan::Known { tokens, fresh, .. } => !fresh && remaining <= tokens + SLACK,
            Plan::GaveUp { at } => self.committed >= at + RETRY_AFTER,
        };
        if search {
            self.plan = self.search()?;
        }
        Ok(())
    }

    /// The completion searched from the parser's current state.
    fn search(&mut self) -> Result<Plan, CoreError> {
        Ok(match closing::shortest_completion(&mut self.parser, &self.bytes, self.eos)? {
            Some(bytes) => Plan::Known { tokens: self.count_tokens(&bytes), bytes, fresh: true },
            None => Plan::GaveUp { at: self.committed },
        })
    }

    /// Tokens in the vocabulary's longest-match tokenisation of `bytes`.
    fn count_tokens(&self, bytes: &[u8]) -> u32 {
        self.parser.token_env.tok_trie().greedy_tokenize(bytes).len() as u32
    }

    /// Whether the allowed `token` leaves the output completable within the budget, and the
    /// plan after it; `None` refuses it. `remaining` ≥ 1 tokens may still be emitted, this one
    /// included.
    fn admit(
        &mut self,
        token: TokenId,
        remaining: u32,
        searches: &mut u32,
    ) -> Result<Option<Chosen>, CoreError> {
        let env = self.parser.token_env.clone();
        let trie = env.tok_trie();
        if trie.eos_tokens().contains(&token) {
            let plan = Plan::Known { bytes: Vec::new(), tokens: 0, fresh: true };
            return Ok(Some(Chosen { token, consumed: false, plan }));
        }
        let (plan_bytes, need, fresh) = match &self.plan {
            Plan::Known { bytes, tokens, fresh } => (bytes.clone(), *tokens, *fresh),
            // no known completion: nothing to protect
            Plan::Unknown | Plan::GaveUp { .. } => {
                return Ok(Some(Chosen { token, consumed: false, plan: self.plan.clone() }))
            }
        };
        let limit = remaining.max(need) - 1;
        let pressure = remaining < need + SLACK + 1;
        let token_bytes = trie.token(token);
        // A prefix of the known completion: its rest completes the output.
        if let Some(rest) = plan_bytes.strip_prefix(token_bytes) {
            let tokens = self.count_tokens(rest);
            if tokens <= limit {
                let plan = Plan::Known { bytes: rest.to_vec(), tokens, fresh };
                return Ok(Some(Chosen { token, consumed: false, plan }));
            }
        }
        // Far from the budget: the known completion still completes the output after `token`.
        if !pressure {
            if let Some(rest) = self.bytes.tokens(&plan_bytes) {
                let mut check = Vec::with_capacity(rest.len() + 2);
                check.push(token);
                check.extend(rest);
                check.push(self.eos);
                if self.parser.validate_tokens_raw(&check).map_err(lg_err)? == check.len() {
                    let plan = Plan::Known { bytes: plan_bytes, tokens: need, fresh: false };
                    return Ok(Some(Chosen { token, consumed: false, plan }));
                }
            }
        }
        // Otherwise search from the state after `token`.
        if *searches == 0 {
            return Ok(None);
        }
        *searches -= 1;
        self.consume(token)?;
        let plan = if self.parser.stop_reason() != StopReason::NotStopped {
            // `token` completed the output
            Plan::Known { bytes: Vec::new(), tokens: 0, fresh: true }
        } else {
            self.search()?
        };
        let fits = match &plan {
            Plan::Known { tokens, .. } => tokens <= &limit,
            // Unknown cost: take it unless the budget is already tight.
            Plan::GaveUp { .. } | Plan::Unknown => !pressure,
        };
        if fits {
            Ok(Some(Chosen { token, consumed: true, plan }))
        } else {
            self.parser.rollback(1).map_err(lg_err)?;
            Ok(None)
        }
    }

    /// The first token of the known completion (EOS when the output is complete), for a step
    /// at which no candidate was admitted.
    fn completion_step(&self) -> Result<Chosen, CoreError> {
        let Plan::Known { bytes, tokens, fresh } = &self.plan else {
            return Err(CoreError::Constraint("no completion known and no token admitted".into()));
        };
        let trie = self.parser.token_env.tok_trie();
        let Some(&token) = trie.greedy_tokenize(bytes).first() else {
            let plan = Plan::Known { bytes: Vec::new(), tokens: 0, fresh: true };
            return Ok(Chosen { token: self.eos, consumed: false, plan });
        };
        let rest = bytes[trie.token_len(token)..].to_vec();
        let plan = Plan::Known { bytes: rest, tokens: tokens.saturating_sub(1), fresh: *fresh };
        Ok(Chosen { token, consumed: false, plan })
    }

    fn commit_token(&mut self, token: TokenId) -> Result<(), CoreError> {
        self.committed += 1;
        match self.chosen.take() {
            Some(chosen) if chosen.token == token => {
                if !chosen.consumed {
                    self.consume(token)?;
                }
                self.plan = chosen.plan;
            }
            other => {
                if other.is_some_and(|c| c.consumed) {
                    self.parser.rollback(1).map_err(lg_err)?;
                }
                self.consume(token)?;
                self.plan = Plan::Unknown;
            }
        }
        Ok(())
    }

    /// Advances the parser by `token` and lets it notice that the output is complete.
    fn consume(&mut self, token: TokenId) -> Result<(), CoreError> {
        let backtrack = self.parser.consume_token(token).map_err(lg_err)?;
        if backtrack != 0 {
            return Err(CoreError::Constraint("llguidance backtracked a token".into()));
        }
        self.parser.check_stop().map_err(lg_err)?;
        Ok(())
    }
}

/// The allowed tokens in greedy order (logit descending, ties to the lowest id): first the
/// [`TOP_K`] highest-logit tokens that llguidance validates one by one, then, only once those
/// are used up, up to [`MASK_CANDIDATES`] more from the full mask.
struct Candidates<'a> {
    logits: &'a [f32],
    /// The highest-logit tokens, in greedy order; only the best until it is used up.
    top: Vec<TokenId>,
    next_top: usize,
    /// Allowed tokens from the mask beyond `top`, in greedy order, once computed.
    masked: Option<Vec<TokenId>>,
    next_masked: usize,
}

impl<'a> Candidates<'a> {
    fn new(logits: &'a [f32]) -> Self {
        let top = best_logit(logits).into_iter().collect();
        Self { logits, top, next_top: 0, masked: None, next_masked: 0 }
    }

    fn next(&mut self, parser: &mut TokenParser) -> Result<Option<TokenId>, CoreError> {
        loop {
            if self.next_top == 1 && self.top.len() == 1 {
                self.top = top_logits(self.logits, TOP_K);
            }
            let Some(&token) = self.top.get(self.next_top) else { break };
            self.next_top += 1;
            if parser.validate_tokens_raw(&[token]).map_err(lg_err)? == 1 {
                return Ok(Some(token));
            }
        }
        if self.masked.is_none() {
            let mask = parser.compute_mask().map_err(lg_err)?;
            let mut masked = top_allowed(self.logits, &mask, MASK_CANDIDATES + self.top.len());
            masked.retain(|t| !self.top.contains(t));
            masked.truncate(MASK_CANDIDATES);
            self.masked = Some(masked);
        }
        let masked = self.masked.as_deref().unwrap_or_default();
        let token = masked.get(self.next_masked).copied();
        self.next_masked += 1;
        Ok(token)
    }
}

/// An llguidance error as [`CoreError::Constraint`].
fn lg_err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Constraint(one_line(&e.to_string()))
}

/// llguidance's multi-line diagnostics on one line (error messages travel as SQL errors).
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The generated schemas of the integration tests, for the unit tests below.
#[cfg(test)]
#[path = "../../tests/support/schemas.rs"]
mod test_schemas;

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::{json, Value};

    use super::*;
    use crate::backend::load_model;
    use crate::models::{ModelDir, GEMMA3_270M};
    use llguidance::toktrie::SimpleVob;

    use super::test_schemas as schemas;
    use schemas::Lcg;

    /// The packaged Gemma model's guidance, built once for the tests of this module.
    fn guidance() -> &'static Guidance {
        static GUIDANCE: OnceLock<Guidance> = OnceLock::new();
        GUIDANCE.get_or_init(|| {
            let path = ModelDir::resolve()
                .expect("a model directory")
                .locate(&GEMMA3_270M)
                .expect("packaged Gemma model missing: run scripts/setup");
            Guidance::new(&load_model(&path).expect("model loads")).expect("guidance builds")
        })
    }

    /// Random logits over the vocabulary, in [0, 1).
    fn random_logits(rng: &mut Lcg, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.below(1 << 20) as f32 / (1 << 20) as f32).collect()
    }

    /// A few allowed tokens of `mask`, picked by `rng`.
    fn some_allowed(rng: &mut Lcg, mask: &SimpleVob, n: usize) -> Vec<usize> {
        let mut allowed = Vec::new();
        mask.iter_set_entries(|i| allowed.push(i));
        (0..n)
            .filter_map(|_| allowed.get(rng.below(allowed.len().max(1) as u32) as usize).copied())
            .collect()
    }

    fn constraints() -> Vec<Constraint> {
        let mut out: Vec<Constraint> =
            schemas::generate(7, 6).into_iter().map(|g| Constraint::Json(g.schema)).collect();
        out.push(Constraint::Json(
            json!({"type": "object", "properties": {"entities": {"type": "array"}}}),
        ));
        out.push(Constraint::Regex(r"[A-Z][a-z]{2,8} [0-9]{3}-[0-9]{4}".into()));
        out.push(Constraint::Choice(vec!["positive".into(), "negative".into(), "neutral".into()]));
        out
    }

    #[test]
    fn candidates_choose_what_the_full_mask_chooses() {
        let guidance = guidance();
        let mut rng = Lcg::new(11);
        let mut steps = [0u32; 3];
        for constraint in constraints() {
            // no budget pressure: the guide's choice must be the plain greedy choice
            let mut guide = guidance.guide(&constraint, 100_000).unwrap();
            let mut reference = guidance.guide(&constraint, 100_000).unwrap().parser;
            for step in 0..48 {
                let mask = reference.compute_mask().unwrap();
                let mut logits = random_logits(&mut rng, mask.len());
                logits.truncate(guidance.factory.tok_env().tok_trie().vocab_size());
                let kind = step % 3;
                let planted = some_allowed(&mut rng, &mask, 2);
                match kind {
                    // the best token is allowed
                    0 => planted.iter().for_each(|&i| logits[i] = 2.0),
                    // the best tokens are not, a lower one is (ties between two allowed ones)
                    1 => {
                        for i in top_logits(&logits, 5) {
                            logits[i as usize] += 3.0;
                        }
                        planted.iter().for_each(|&i| logits[i] = 2.5);
                    }
                    // random: the best allowed token is found in the mask
                    _ => {}
                }
                let expected = top_allowed(&logits, &mask, 1)[0];
                let got = guide.choose(&logits).unwrap().0 as TokenId;
                assert_eq!(got, expected, "{constraint:?} step {step} (kind {kind})");
                steps[kind] += 1;
                if reference.token_env.tok_trie().eos_tokens().contains(&got) {
                    break;
                }
                guide.commit(LlamaToken(got as i32)).unwrap();
                reference.consume_token(got).unwrap();
                reference.check_stop().unwrap();
                if guide.is_complete() {
                    assert!(reference.stop_reason() != StopReason::NotStopped);
                    break;
                }
            }
        }
        assert!(steps.iter().all(|&n| n >= 20), "steps per kind: {steps:?}");
    }

    /// Decodes `constraint` within `budget` with logits from `rng` (a model that never wants to
    /// finish) and returns the output, or the error.
    fn decode_randomly(
        constraint: &Constraint,
        budget: u32,
        rng: &mut Lcg,
    ) -> Result<String, CoreError> {
        let guidance = guidance();
        let trie = guidance.factory.tok_env().tok_trie();
        let mut guide = guidance.guide(constraint, budget)?;
        let mut out = Vec::new();
        let mut committed = 0;
        while committed < budget {
            let logits = random_logits(rng, trie.vocab_size());
            let token = guide.choose(&logits)?;
            if trie.eos_tokens().contains(&(token.0 as TokenId)) {
                guide.end();
                break;
            }
            guide.commit(token)?;
            out.extend_from_slice(trie.token(token.0 as TokenId));
            committed += 1;
            if guide.is_complete() {
                break;
            }
        }
        guide.finish(budget)?;
        Ok(String::from_utf8(out).expect("constrained JSON output is UTF-8"))
    }

    #[test]
    fn random_logits_still_complete_whenever_the_shortest_instance_fits() {
        let mut rng = Lcg::new(5);
        let mut bad = Vec::new();
        let (mut ok, mut unfinished) = (0, 0);
        for (n, generated) in schemas::generate(1, 24).into_iter().enumerate() {
            let validator = jsonschema::validator_for(&generated.schema).unwrap();
            let shortest = generated.shortest.len() as u32;
            let constraint = Constraint::Json(generated.schema.clone());
            for budget in [shortest.saturating_sub(2).max(1), shortest, 16, 48] {
                match decode_randomly(&constraint, budget, &mut rng) {
                    Ok(text) => match serde_json::from_str::<Value>(&text) {
                        Ok(v) if validator.is_valid(&v) => ok += 1,
                        _ => bad.push(format!("schema {n} budget {budget}: invalid {text:?}")),
                    },
                    Err(CoreError::ConstraintUnfinished { .. }) if budget < shortest => {
                        unfinished += 1
                    }
                    Err(e) => bad.push(format!(
                        "schema {n} ({}) budget {budget}, shortest {shortest}: {e}",
                        generated.schema
                    )),
                }
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        assert!(ok > 48, "ok {ok}, unfinished {unfinished}");
    }

    #[test]
    fn the_search_finds_the_shortest_instance_from_the_empty_output() {
        let guidance = guidance();
        let generated = schemas::generate(1, 24).into_iter().chain(schemas::generate(2026, 12));
        for (n, g) in generated.enumerate() {
            let mut guide = guidance.guide(&Constraint::Json(g.schema.clone()), 1000).unwrap();
            guide.refresh_plan(1000).unwrap();
            let Plan::Known { bytes, .. } = &guide.plan else {
                panic!("schema {n}: no completion found: {:?}", guide.plan);
            };
            assert_eq!(
                bytes.len(),
                g.shortest.len(),
                "schema {n}: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn regexes_and_choices_complete_at_small_budgets() {
        let mut rng = Lcg::new(3);
        let cases: Vec<(Constraint, u32)> = vec![
            (Constraint::Regex(r"[a-z]{3}-[0-9]{3}".into()), 7),
            (Constraint::Regex(r"(cat|dog|bird)s?".into()), 3),
            (Constraint::Regex(r"\d{3}-\d{4}".into()), 8),
            (Constraint::Regex(r"#[0-9a-f]{6}".into()), 7),
            (Constraint::Choice(vec!["alpha".into(), "beta".into(), "gamma".into()]), 4),
            (Constraint::Choice(vec!["yes".into(), "no".into()]), 2),
        ];
        for (constraint, budget) in cases {
            let full = match &constraint {
                Constraint::Regex(re) => format!("^(?:{re})$"),
                Constraint::Choice(cs) => format!("^(?:{})$", cs.join("|")),
                Constraint::Json(_) => unreachable!(),
            };
            let full = regex::Regex::new(&full).unwrap();
            for round in 0..4 {
                let text = decode_randomly(&constraint, budget, &mut rng)
                    .unwrap_or_else(|e| panic!("{constraint:?} at {budget}, round {round}: {e}"));
                assert!(full.is_match(&text), "{constraint:?}: {text:?}");
            }
        }
    }

    #[test]
    fn one_line_joins_diagnostics() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
