//! A bit-for-bit digest of the logits a request's tokens were chosen from (through
//! [`Caller::logits`]), and a request decoded alone with it: texts alone would not show a change
//! of rounding that leaves every greedy choice as it was.

use steadytext_core::{Caller, GenerateRequest, Generator};

/// The FNV-1a offset basis: the digest of no logits.
pub const EMPTY: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds the bits of `logits` into a 64-bit FNV-1a `digest`.
pub fn fold(digest: &mut u64, logits: &[f32]) {
    for x in logits {
        for byte in x.to_bits().to_le_bytes() {
            *digest = (*digest ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A caller that always wants its result and digests every logit it is shown.
pub struct Digest(pub u64);

impl Caller for Digest {
    fn wanted(&self) -> bool {
        true
    }

    fn logits(&mut self, logits: &[f32]) {
        fold(&mut self.0, logits);
    }
}

/// `req` decoded alone in a fresh one-stream batch: its text and the digest of its logits.
pub fn alone(g: &Generator, req: &GenerateRequest) -> (String, u64) {
    let mut batch = g.decode_batch(1).unwrap();
    let mut finished: Vec<_> = batch.admit(req, Digest(EMPTY)).into_iter().collect();
    while !batch.is_empty() {
        finished.extend(batch.step());
    }
    let (digest, result) = finished.pop().expect("the request finished");
    let text = result.unwrap_or_else(|e| panic!("{:?}: {e}", req.prompt)).text;
    (text, digest.0)
}
