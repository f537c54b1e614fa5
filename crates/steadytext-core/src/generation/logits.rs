//! The greedy choice over a step's logits, shared by free and constrained decoding: the argmax
//! of free decoding, and the rankings in greedy order (logit descending, ties to the lowest id)
//! from which constrained decoding takes its candidates.

use llama_cpp_2::token::LlamaToken;
use llguidance::toktrie::{SimpleVob, TokenId};

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

/// The token with the largest logit, ties to the lowest id (`None` when every logit is NaN).
///
/// The vectorised argmax of unconstrained decoding ([`argmax`]). The general
/// [`top_logits`] compares every logit with the current k-th one, which does not vectorise and
/// cost about a millisecond per step over 262 144 logits.
pub(crate) fn best_logit(logits: &[f32]) -> Option<TokenId> {
    argmax(logits).map(|i| i as TokenId)
}

/// The `k` tokens with the largest logits in greedy order (logit descending, ties to the
/// lowest id); NaN logits are never taken.
pub(crate) fn top_logits(logits: &[f32], k: usize) -> Vec<TokenId> {
    let mut top = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        offer(&mut top, logits, k, i, l);
    }
    top
}

/// The `k` allowed tokens with the largest logits in greedy order.
pub(crate) fn top_allowed(logits: &[f32], allowed: &SimpleVob, k: usize) -> Vec<TokenId> {
    let mut top = Vec::with_capacity(k + 1);
    allowed.iter_set_entries(|i| {
        if let Some(&l) = logits.get(i) {
            offer(&mut top, logits, k, i, l);
        }
    });
    top
}

/// Inserts token `i` with logit `l` into `top` (greedy order, at most `k` long), offered in
/// increasing id order so that ties keep the lower id first.
#[inline]
fn offer(top: &mut Vec<TokenId>, logits: &[f32], k: usize, i: usize, l: f32) {
    if l.is_nan() || k == 0 {
        return;
    }
    if top.len() == k && !top.last().is_some_and(|&last| l > logits[last as usize]) {
        return;
    }
    let pos = top.partition_point(|&j| logits[j as usize] >= l);
    top.insert(pos, i as TokenId);
    top.truncate(k);
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
    fn best_logit_is_the_first_of_top_logits() {
        let mut state = 17u32;
        let mut below_16 = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state >> 28
        };
        for len in [1usize, 7, 8, 9, 1000, 262_147] {
            // few distinct values, so that ties across lanes and with the tail are common
            let logits: Vec<f32> = (0..len)
                .map(|_| match below_16() {
                    0 => f32::NAN,
                    v => (v % 5) as f32 - 2.0,
                })
                .collect();
            assert_eq!(best_logit(&logits), top_logits(&logits, 1).first().copied(), "{len}");
        }
        assert_eq!(best_logit(&[f32::NAN, f32::NAN]), None);
        assert_eq!(best_logit(&[f32::NEG_INFINITY, f32::NAN]), Some(0));
    }

    #[test]
    fn top_logits_orders_greedily_and_breaks_ties_low() {
        let logits = [5.0, 1.0, 3.0, 3.0, 9.0, f32::NAN, 3.0];
        assert_eq!(top_logits(&logits, 1), vec![4]);
        assert_eq!(top_logits(&logits, 4), vec![4, 0, 2, 3]);
        assert_eq!(top_logits(&logits, 10), vec![4, 0, 2, 3, 6, 1]);
        assert_eq!(top_logits(&logits, 0), Vec::<TokenId>::new());
        assert_eq!(top_logits(&[], 3), Vec::<TokenId>::new());
    }

    #[test]
    fn top_allowed_ignores_disallowed_and_breaks_ties_low() {
        let logits = [5.0, 1.0, 3.0, 3.0, 9.0];
        let mut mask = SimpleVob::alloc(logits.len());
        assert_eq!(top_allowed(&logits, &mask, 1), Vec::<TokenId>::new());
        mask.allow_token(1);
        mask.allow_token(2);
        mask.allow_token(3);
        assert_eq!(top_allowed(&logits, &mask, 1), vec![2]);
        assert_eq!(top_allowed(&logits, &mask, 3), vec![2, 3, 1]);
        mask.allow_token(4);
        assert_eq!(top_allowed(&logits, &mask, 2), vec![4, 2]);
    }
}
