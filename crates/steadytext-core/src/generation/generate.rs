//! Deterministic greedy text generation, free or constrained: the `generate*` front ends of a
//! [`Generator`], each a thin loop over a [`DecodeBatch`].

pub use crate::generation::generator::{
    GenerateRequest, Generation, Generator, N_CTX, SPLIT_KV_FREE_POSITIONS,
};

use crate::decode_batch::{Caller, DecodeBatch};
use crate::CoreError;

impl Generator {
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
            let mut batch = DecodeBatch::new(self, valid.len(), longest, false)?;
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
    /// decoded together, each of up to [`N_CTX`] positions, joining and leaving at any step; a
    /// prompt longer than one chunk is prefilled a piece per step, between the steps of the
    /// others.
    ///
    /// Its streams hold [`N_CTX`] cells each, whatever the request; that changes no output
    /// (see [`Generator::new_context`]: the attended length and the cell layout do not depend
    /// on the stream size, and cells left by an earlier request of a reused stream are masked,
    /// as the zeroed cells of a fresh context are). KV memory is `capacity + 2` times a 4096-cell
    /// stream (for Gemma 3 270M about 28 MiB per stream: 3 global-attention layers of 4096
    /// cells, 15 sliding-window layers of 1024).
    pub fn decode_batch<C: Caller>(
        &self,
        capacity: usize,
    ) -> Result<DecodeBatch<'_, C>, CoreError> {
        DecodeBatch::new(self, capacity, N_CTX as usize, true)
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
