//! The greedy choice over a step's logits, shared by free and constrained decoding.

use llama_cpp_2::token::LlamaToken;

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
}
