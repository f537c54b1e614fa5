//! Iteration-level (continuous) batching: a long-lived llama.cpp context in which generation
//! requests join the running decode after their own prefill and leave it the step they end.
//!
//! [`DecodeBatch::admit`] prefills one request alone into a free KV stream; [`DecodeBatch::step`]
//! decodes one token of every live sequence in one llama.cpp call and hands back the requests
//! that ended (or whose caller stopped wanting them). Every output is byte-identical to the same
//! request decoded alone in a fresh context, whenever it joined and whoever its neighbours were
//! (tested in `tests/generate_batch.rs`). The rules that make it so are stated where each
//! decision is made:
//!
//! * a prompt of 64 tokens or more is prefilled alone, never mixed
//!   ([`DecodeBatch::prefill_chunk`]); one longer than one chunk is prefilled a piece (at most
//!   256 tokens) per step, between the decode steps of the live sequences, so that it never
//!   stalls them for longer than one piece ([`DecodeBatch::feed`]);
//! * shorter prompts admitted between two steps are prefilled together, in one llama.cpp call
//!   instead of one each ([`DecodeBatch::join_short`]);
//! * every sequence has its own KV stream, laid out exactly as when it runs alone
//!   ([`Generator::new_context`](crate::Generator));
//! * the live sequences always occupy the streams `0..len`, because llama.cpp decodes one step
//!   in one micro-batch only when its sequence ids are consecutive ([`DecodeBatch::remove`]);
//! * a step with one live sequence gets a companion row when its products or attention would
//!   otherwise take a single-row path ([`DecodeBatch::step`]).

use std::cmp::Reverse;
use std::collections::VecDeque;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;

use crate::error::decode_err;
use crate::generation::generator::{
    GenerateRequest, Generation, Generator, N_CTX, PROMPT_CHUNK, SPLIT_KV_FREE_POSITIONS,
};
use crate::generation::logits::greedy;
use crate::guide::Guide;
use crate::threads::{set_context_threads, ThreadPolicy};
use crate::CoreError;

/// What the caller of one admitted request attaches to it: asked before the prefill and before
/// every decode step whether the result is still wanted, and told each new piece of output.
pub trait Caller {
    /// Whether the result is still wanted; once false, the request stops with
    /// [`CoreError::Abandoned`] before the next decode step (its neighbours are unaffected).
    fn wanted(&self) -> bool;

    /// A new piece of the output text, as soon as it is decoded: whole UTF-8 characters, in
    /// order; the pieces of a request concatenate to its final [`Generation::text`] (a
    /// streaming hook; the default ignores them).
    fn piece(&mut self, _text: &str) {}

    /// The logits from which the request's next token is chosen, once per token (a hook for
    /// tests and diagnostics that check rounding bit for bit; the default ignores them).
    fn logits(&mut self, _logits: &[f32]) {}
}

/// One finished request: its caller and its result.
pub type Finished<C> = (C, Result<Generation, CoreError>);

/// Prompts shorter than this many tokens are prefilled together at the next step
/// ([`DecodeBatch::join_short`]); ggml's CPU flash attention computes a sequence's queries one
/// at a time below it and in tiles of this many queries from it on (`GGML_FA_TILE_Q`), which
/// rounds differently (measured: the logits of 64-, 65- and 100-token prompts prefilled
/// together differed from alone in every bit pattern, those of 10 to 63 tokens in none).
const SHORT_PROMPT: usize = 64;

/// A long-lived decoding context for up to [`DecodeBatch::capacity`] concurrent generations
/// of at most `positions` tokens each (prompt plus generated), plus the filling stream and one
/// companion stream.
///
/// Streams: `0..capacity` hold the live sequences (`live[s]` in stream `s`); stream
/// `capacity` is the filling stream, where a long prompt is prefilled a piece per step before
/// it moves to the next live stream; stream `capacity + 1` is the companion of the filling
/// stream's chunks. A step's companion row goes to the stream after the live ones, and a short
/// prompt's to the stream after its own; while a prompt fills, those are below `capacity`
/// (the filling request holds a place of the capacity), so no two uses meet.
pub struct DecodeBatch<'g, C> {
    generator: &'g Generator,
    ctx: LlamaContext<'g>,
    batch: LlamaBatch<'static>,
    /// Prompt plus generated tokens one stream holds.
    positions: usize,
    capacity: usize,
    /// The live sequences; `live[s]` occupies KV stream `s`.
    live: Vec<(C, Sequence)>,
    /// Admitted requests with a prompt longer than one chunk, in admission order: the first is
    /// being prefilled into the filling stream, a piece per step; the others wait for it.
    filling: VecDeque<Filling<C>>,
    /// Admitted requests with a short prompt, waiting for the next step to join
    /// ([`DecodeBatch::join_short`]).
    joining: Vec<(C, Sequence)>,
    /// Whether long prompts are prefilled a piece per step (a long-lived batch that requests
    /// join at any step) or whole at admission (a batch of requests all admitted at once, which
    /// has no running generation to keep going and then needs no filling stream).
    chunked_prefill: bool,
    /// Tokens emitted since the batch was created.
    tokens: u64,
    /// The thread count the context computes with now.
    threads: i32,
}

impl<'g, C: Caller> DecodeBatch<'g, C> {
    /// A context for `capacity` live sequences of at most `positions` positions each, plus the
    /// companion stream and, with `chunked_prefill`, the filling stream.
    pub(crate) fn new(
        generator: &'g Generator,
        capacity: usize,
        positions: usize,
        chunked_prefill: bool,
    ) -> Result<Self, CoreError> {
        let capacity = capacity.max(1);
        let threads = generator.thread_policy().now();
        let streams = capacity as u32 + 1 + u32::from(chunked_prefill);
        let ctx = generator.new_context(streams, positions, threads)?;
        let batch = LlamaBatch::new(PROMPT_CHUNK.max(capacity + 1), 1);
        let (live, filling, joining) = (Vec::new(), VecDeque::new(), Vec::new());
        Ok(Self {
            generator,
            ctx,
            batch,
            positions,
            capacity,
            live,
            filling,
            joining,
            chunked_prefill,
            tokens: 0,
            threads,
        })
    }

    /// Most sequences decoded together.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Requests admitted and not finished: the live sequences, the prompts still filling and
    /// those waiting to join the next step.
    pub fn len(&self) -> usize {
        self.live.len() + self.filling.len() + self.joining.len()
    }

    /// Tokens emitted since the batch was created (end-of-generation tokens not counted).
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Whether no request is admitted (none live, filling or joining).
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.filling.is_empty() && self.joining.is_empty()
    }

    /// Whether [`DecodeBatch::admit`] has to wait for a request to finish.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// The callers of the admitted requests: the live ones in stream order, then those filling,
    /// then those joining.
    pub fn callers(&self) -> impl Iterator<Item = &C> {
        let live = self.live.iter().map(|(c, _)| c);
        live.chain(self.filling.iter().map(|f| &f.caller))
            .chain(self.joining.iter().map(|(c, _)| c))
    }

    /// Admits `req`; the sequence joins the next [`step`](Self::step). A prompt of
    /// [`SHORT_PROMPT`] tokens or more is prefilled here, alone, into a free stream; in a batch
    /// with chunked prefill ([`Generator::decode_batch`]) one longer than one chunk
    /// ([`PROMPT_CHUNK`] tokens) instead fills a piece per step (see [`DecodeBatch::feed`]) and
    /// joins the live sequences with its last piece. A shorter prompt waits for the next step,
    /// which prefills it with the other short ones ([`DecodeBatch::join_short`]). Returns the
    /// request at once when it is already finished: refused (empty prompt, too long for a
    /// stream, invalid constraint), not wanted any more, failed in its prefill, or ended by its
    /// first token. Panics if the batch [`is_full`](Self::is_full).
    pub fn admit(&mut self, req: &GenerateRequest, caller: C) -> Option<Finished<C>> {
        match self.generator.prepare(req, self.positions) {
            Ok(seq) => self.admit_prepared(seq, caller),
            Err(e) => Some((caller, Err(e))),
        }
    }

    /// [`DecodeBatch::admit`] for a request already checked by [`Generator::prepare`].
    pub(crate) fn admit_prepared(&mut self, seq: Sequence, caller: C) -> Option<Finished<C>> {
        assert!(!self.is_full(), "admit on a full DecodeBatch");
        if !caller.wanted() {
            return Some((caller, Err(CoreError::Abandoned)));
        }
        if self.chunked_prefill && seq.prompt.len() > PROMPT_CHUNK {
            self.filling.push_back(Filling { caller, seq, fed: 0 });
            return None;
        }
        if seq.prompt.len() < SHORT_PROMPT && !self.generator.companion_always() {
            self.joining.push((caller, seq));
            return None;
        }
        let stream = self.live.len();
        let mut fed = 0;
        while fed < seq.prompt.len() {
            let end = chunk_end(fed, seq.prompt.len());
            match self.prefill_chunk(&seq, stream, (fed, end), stream + 1) {
                Ok(next) => fed = next,
                Err(e) => {
                    let _ = self.clear_stream(stream);
                    return Some((caller, Err(e)));
                }
            }
        }
        let row = (seq.prompt.len() - 1) % PROMPT_CHUNK;
        self.join(caller, seq, stream, row)
    }

    /// A sequence whose whole prompt is in `stream` (the next live stream, a stream after it, or
    /// the filling stream): picks its first token from the logits of its prompt's last row (row
    /// `row` of the last decode call) and, unless that ends it, makes it live in the next live
    /// stream (moving the stream's cells there whole).
    fn join(
        &mut self,
        mut caller: C,
        mut seq: Sequence,
        stream: usize,
        row: usize,
    ) -> Option<Finished<C>> {
        seq.pos = seq.prompt.len() as i32;
        let logits = self.ctx.get_logits_ith(row as i32);
        caller.logits(logits);
        seq.choose(logits);
        let vocab = self.generator.model().vocab();
        let goes_on = seq.max_tokens > 0 && seq.accept(&vocab, &mut caller);
        self.tokens += u64::from(seq.generated);
        if !goes_on {
            let _ = self.clear_stream(stream);
            let result = seq.finish(&mut caller);
            return Some((caller, result));
        }
        let to = self.live.len();
        if stream != to {
            // as in `remove`: the whole stream, cells and positions as they are
            self.ctx
                .copy_kv_cache_seq(stream as i32, to as i32, None, None)
                .expect("whole-stream KV copy");
            let _ = self.clear_stream(stream);
        }
        self.live.push((caller, seq));
        None
    }

    /// Prefills the next piece of the first filling prompt into the filling stream, alone in
    /// its decode call, and once its last piece is in, lets it join (or returns it, ended by its
    /// first token or failed). [`DecodeBatch::step`] calls it right after
    /// [`DecodeBatch::release`], which has taken out the prompts no longer wanted.
    ///
    /// Determinism: the pieces are the chunks the prompt would be fed in alone, each cut in two
    /// where it is longer than [`FILL_PIECE`] tokens ([`piece_end`]), each in its own decode
    /// call, its own stream, so its cells and the logits of its last row are the same; a stream
    /// copied whole keeps its cell layout.
    /// Latency: the live sequences wait one piece between two of their steps, not a whole
    /// prompt (a 1 722-token prompt prefilled at once stopped a generation streaming at 12 ms
    /// per token for 3.0–3.1 s, release build, in issue #22's measurement; with whole 512-token
    /// chunks, the longest gap beside 8 generations was 1.05–1.19 × two steps plus one chunk
    /// alone, because a chunk deep in a prompt costs more than the first).
    fn feed(&mut self) -> Option<Finished<C>> {
        let mut f = self.filling.pop_front()?;
        let stream = self.capacity;
        let end = piece_end(f.fed, f.seq.prompt.len());
        match self.prefill_chunk(&f.seq, stream, (f.fed, end), stream + 1) {
            Err(e) => {
                let _ = self.clear_stream(stream);
                Some((f.caller, Err(e)))
            }
            Ok(next) if next < f.seq.prompt.len() => {
                f.fed = next;
                self.filling.push_front(f);
                None
            }
            Ok(_) => {
                let row = f.seq.prompt.len() - 1 - f.fed;
                self.join(f.caller, f.seq, stream, row)
            }
        }
    }

    /// Lets the requests admitted with a short prompt join the live sequences: prefills their
    /// prompts together, each into its own stream after the live ones, in as few llama.cpp calls
    /// as [`PROMPT_CHUNK`] tokens allow (one for up to 8 prompts of 64 tokens), picks each one's
    /// first token from its last row's logits and makes it live (see [`DecodeBatch::join`]).
    /// Returns those that ended with their first token or whose prefill failed.
    /// [`DecodeBatch::step`] calls it after [`DecodeBatch::feed`].
    ///
    /// Speed: a prefill call reads every weight of the model whatever its number of rows, and
    /// one with outputs computes the output layer (for Gemma 3 270M, a 262 144-token vocabulary);
    /// eight short prompts prefilled one by one cost eight calls (measured in issue #22's
    /// profile: about 28 ms per 10-token prompt, a fifth of a drain of 16-token jobs).
    ///
    /// Determinism: every row is computed as when the prompt is prefilled alone. The prompts
    /// are shorter than [`SHORT_PROMPT`] tokens, so ggml's flash attention computes each query
    /// on its own over its own stream's cells whatever the micro-batch (llama.cpp cuts a batch
    /// of several streams into micro-batches of as many tokens of each), and the split-KV path
    /// of a lone query needs 512 attended cells, more than the 256 such a prompt has. The
    /// matrix products compute each row with the same kernel whatever the number of rows: this
    /// path is only taken for models whose single-row products round like multi-row ones
    /// ([`Generator::companion_always`] false). Each stream is cleared first and its cells
    /// filled in position order, the layout of a prompt prefilled alone. The prompts go to the
    /// streams longest first, so that llama.cpp's later micro-batches (the tokens of the longer
    /// prompts) are of consecutive streams, as it requires. Tested bit for bit on the logits,
    /// against golden digests and against each request decoded alone
    /// (`tests/generate_determinism.rs`, `tests/generate_batch.rs`).
    fn join_short(&mut self) -> Vec<Finished<C>> {
        let mut joining = std::mem::take(&mut self.joining);
        joining.sort_by_key(|(_, seq)| Reverse(seq.prompt.len()));
        let mut done = Vec::new();
        let mut rest = joining.into_iter().peekable();
        while rest.peek().is_some() {
            // one call: as many prompts as fit in PROMPT_CHUNK tokens (each is shorter)
            let mut group = Vec::new();
            let mut tokens = 0;
            while let Some((_, seq)) = rest.peek() {
                if !group.is_empty() && tokens + seq.prompt.len() > PROMPT_CHUNK {
                    break;
                }
                tokens += seq.prompt.len();
                group.push(rest.next().expect("peeked"));
            }
            let first = self.live.len();
            match self.prefill_together(&group, first) {
                Ok(rows) => {
                    for (i, ((caller, seq), row)) in group.into_iter().zip(rows).enumerate() {
                        done.extend(self.join(caller, seq, first + i, row));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for s in first..first + group.len() {
                        let _ = self.clear_stream(s);
                    }
                    done.extend(
                        group.into_iter().map(|(c, _)| (c, Err(CoreError::Decode(msg.clone())))),
                    );
                }
            }
        }
        done
    }

    /// Prefills the whole prompts of `group` in one llama.cpp call, the `i`-th into stream
    /// `first + i` (cleared first), with logits for each prompt's last token; returns the batch
    /// row of each one's logits.
    fn prefill_together(
        &mut self,
        group: &[(C, Sequence)],
        first: usize,
    ) -> Result<Vec<usize>, CoreError> {
        self.batch.clear();
        let mut rows = Vec::with_capacity(group.len());
        for (i, (_, seq)) in group.iter().enumerate() {
            let stream = first + i;
            self.clear_stream(stream)?;
            let last = seq.prompt.len() - 1;
            for (pos, tok) in seq.prompt.iter().enumerate() {
                self.batch
                    .add(*tok, pos as i32, &[stream as i32], pos == last)
                    .map_err(decode_err)?;
            }
            rows.push(self.batch.n_tokens() as usize - 1);
        }
        self.decode()?;
        Ok(rows)
    }

    /// Decodes the tokens `from..end` of `seq`'s prompt (a chunk, see [`chunk_end`], or a piece
    /// of one, see [`piece_end`]) into `stream`, on its own, exactly as when the request runs
    /// alone; returns `end`. The prompt's last token gets logits (row `len - 1 - from`). The
    /// stream is cleared before the first chunk.
    ///
    /// Determinism: prompts of [`SHORT_PROMPT`] tokens or more are never mixed into one decode
    /// call, nor into a decode step of the live sequences (shorter ones are prefilled together,
    /// see [`DecodeBatch::join_short`]). llama.cpp splits a mixed batch into micro-batches with
    /// an equal number of tokens per sequence, so a prompt's tokens would be grouped
    /// differently depending on its neighbours' lengths, and ggml's CPU flash attention picks
    /// different kernels (tiled for ≥ 64 queries of a sequence, split-KV for a single query)
    /// from those group sizes.
    ///
    /// A last chunk of a single token at position [`SPLIT_KV_FREE_POSITIONS`] or beyond (a
    /// prompt of 512·k + 1 tokens) gets a companion row in `companion` (the next stream), for
    /// the rule of [`DecodeBatch::step`]: alone, ggml's flash attention would split that
    /// query's KV by thread count, and the output would depend on `--threads`.
    fn prefill_chunk(
        &mut self,
        seq: &Sequence,
        stream: usize,
        (from, end): (usize, usize),
        companion: usize,
    ) -> Result<usize, CoreError> {
        if from == 0 {
            self.clear_stream(stream)?;
        }
        self.batch.clear();
        for (pos, tok) in (from..end).zip(&seq.prompt[from..end]) {
            let last = pos + 1 == seq.prompt.len();
            self.batch.add(*tok, pos as i32, &[stream as i32], last).map_err(decode_err)?;
        }
        if end - from == 1 && from as i32 >= SPLIT_KV_FREE_POSITIONS {
            self.add_companion(companion, false)?;
        }
        self.decode()?;
        Ok(end)
    }

    /// Decodes one token of every live sequence in one llama.cpp call (first stopping those
    /// whose caller no longer wants them) and returns the requests that ended: abandoned,
    /// finished (end-of-generation token, `max_tokens`, constraint complete) or failed. A
    /// failed decode call fails every live request.
    ///
    /// Determinism: a step with a single live sequence must compute that sequence exactly as
    /// a step shared with others would. It then also decodes a companion row (a BOS token at
    /// position 0 of the next stream, cleared before each step, its logits ignored) when the
    /// model's single-row products round differently from multi-row ones
    /// ([`Generator::companion_always`]), and from position [`SPLIT_KV_FREE_POSITIONS`] on,
    /// where ggml's flash attention would otherwise split a lone stream's KV by thread count.
    /// Steps shared by several sequences never take either path: each sequence's products are
    /// computed row by row with the same kernel, and its attention runs over its own stream
    /// with its own mask (the cells beyond its length, masked, contribute nothing).
    pub fn step(&mut self) -> Vec<Finished<C>> {
        let mut done = self.release();
        done.extend(self.feed());
        done.extend(self.join_short());
        if self.live.is_empty() {
            return done;
        }
        if let Err(e) = self.decode_step() {
            let msg = e.to_string();
            let all: Vec<usize> = (0..self.live.len()).collect();
            for (caller, _) in self.remove(&all) {
                done.push((caller, Err(CoreError::Decode(msg.clone()))));
            }
            return done;
        }
        let vocab = self.generator.model().vocab();
        let mut ended = Vec::new();
        for (s, (caller, seq)) in self.live.iter_mut().enumerate() {
            seq.pos += 1;
            let logits = self.ctx.get_logits_ith(s as i32);
            caller.logits(logits);
            seq.choose(logits);
            let generated = seq.generated;
            if !seq.accept(&vocab, caller) {
                ended.push(s);
            }
            self.tokens += u64::from(seq.generated - generated);
        }
        for (mut caller, seq) in self.remove(&ended) {
            let result = seq.finish(&mut caller);
            done.push((caller, result));
        }
        done
    }

    /// Stops the admitted requests whose caller no longer wants them ([`CoreError::Abandoned`])
    /// and frees their places at once; [`DecodeBatch::step`] does this first too. (The cells an
    /// abandoned prompt left in the filling stream stay until the next prompt's first chunk
    /// clears it, as [`DecodeBatch::prefill_chunk`] does for every stream.)
    pub fn release(&mut self) -> Vec<Finished<C>> {
        let gone: Vec<usize> = (0..self.live.len()).filter(|&s| !self.live[s].0.wanted()).collect();
        let mut done: Vec<Finished<C>> =
            self.remove(&gone).into_iter().map(|(c, _)| (c, Err(CoreError::Abandoned))).collect();
        let (keep, gone): (Vec<_>, Vec<_>) =
            self.filling.drain(..).partition(|f| f.caller.wanted());
        self.filling = keep.into();
        done.extend(gone.into_iter().map(|f| (f.caller, Err(CoreError::Abandoned))));
        let (keep, gone): (Vec<_>, Vec<_>) =
            self.joining.drain(..).partition(|(caller, _)| caller.wanted());
        self.joining = keep;
        done.extend(gone.into_iter().map(|(caller, _)| (caller, Err(CoreError::Abandoned))));
        done
    }

    /// The llama.cpp call of one step: row `s` is the pending token of stream `s`.
    fn decode_step(&mut self) -> Result<(), CoreError> {
        self.batch.clear();
        for (s, (_, seq)) in self.live.iter().enumerate() {
            let token = seq.next.expect("a pending token for every live sequence");
            self.batch.add(token, seq.pos, &[s as i32], true).map_err(decode_err)?;
        }
        if let [(_, seq)] = self.live.as_slice() {
            if self.generator.companion_always() || seq.pos >= SPLIT_KV_FREE_POSITIONS {
                self.add_companion(1, true)?;
            }
        }
        self.decode()
    }

    /// One llama.cpp decode call of the batch, on as many threads as the generator's
    /// [`ThreadPolicy`](crate::ThreadPolicy) gives now (outputs do not depend on it).
    fn decode(&mut self) -> Result<(), CoreError> {
        if let ThreadPolicy::Adaptive(_) = self.generator.thread_policy() {
            self.set_threads(self.generator.thread_policy().now());
        }
        self.ctx.decode(&mut self.batch).map_err(decode_err)
    }

    /// The number of threads the context computes with now.
    pub fn threads(&self) -> i32 {
        self.threads
    }

    /// Computes with `threads` threads from the next decode call on (an adaptive policy
    /// chooses again before each call; a fixed one keeps this). Outputs do not depend on it.
    /// Returns whether the count is now `threads`.
    pub fn set_threads(&mut self, threads: i32) -> bool {
        let threads = threads.clamp(1, 256);
        if threads != self.threads && set_context_threads(&mut self.ctx, self.threads, threads) {
            self.threads = threads;
        }
        self.threads == threads
    }

    /// Adds the companion row (BOS at position 0 of `stream`, cleared first) to the batch.
    fn add_companion(&mut self, stream: usize, logits: bool) -> Result<(), CoreError> {
        self.clear_stream(stream)?;
        let bos = self.generator.model().vocab().bos();
        self.batch.add(bos, 0, &[stream as i32], logits).map_err(decode_err)
    }

    /// Stops every admitted request and returns their callers (e.g. after a panic in the
    /// engine); the batch is empty and usable afterwards.
    pub fn drain(&mut self) -> Vec<C> {
        let all: Vec<usize> = (0..self.live.len()).collect();
        let mut callers: Vec<C> = self.remove(&all).into_iter().map(|(c, _)| c).collect();
        callers.extend(self.filling.drain(..).map(|f| f.caller));
        callers.extend(self.joining.drain(..).map(|(c, _)| c));
        callers
    }

    /// Takes the sequences at the stream indices `gone` (ascending) out of the batch and keeps
    /// the others in the streams `0..len`, each moved at most once, in one KV copy.
    ///
    /// Determinism and speed: llama.cpp builds a micro-batch only from consecutive sequence ids
    /// when the KV cache is not unified, so a step over streams {0, 2} would run as two
    /// one-sequence micro-batches — no batching gain, and each of them alone on the single-row
    /// paths the companion row exists to avoid. A surviving sequence above the new length is
    /// therefore moved into a hole below it: llama.cpp copies the whole stream (every cell, its
    /// positions and the stream's head) before the next decode call, so the sequence continues
    /// with exactly the cell layout it had. The vacated streams are cleared; a cleared stream
    /// restarts at cell 0, as a fresh one does.
    fn remove(&mut self, gone: &[usize]) -> Vec<(C, Sequence)> {
        if gone.is_empty() {
            return Vec::new();
        }
        let old_len = self.live.len();
        let mut slots: Vec<Option<(C, Sequence)>> = self.live.drain(..).map(Some).collect();
        let removed: Vec<(C, Sequence)> =
            gone.iter().map(|&s| slots[s].take().expect("each index removed once")).collect();
        let new_len = old_len - gone.len();
        // survivors above the new length fill the holes below it, highest first
        let mut movers: Vec<usize> = (new_len..old_len).filter(|&s| slots[s].is_some()).collect();
        for hole in gone.iter().copied().filter(|&h| h < new_len) {
            let from = movers.pop().expect("as many survivors above as holes below");
            slots[hole] = slots[from].take();
            // a failure here leaves the stream's old contents: the sequence would continue on
            // them, so fail loudly instead (llama.cpp's seq_cp does not fail for full streams)
            self.ctx
                .copy_kv_cache_seq(from as i32, hole as i32, None, None)
                .expect("whole-stream KV copy");
        }
        for s in new_len..old_len {
            let _ = self.clear_stream(s);
        }
        self.live = slots.into_iter().flatten().collect();
        debug_assert_eq!(self.live.len(), new_len);
        removed
    }

    /// Removes every cell of `stream` (metadata only; llama.cpp restarts the stream at cell 0).
    fn clear_stream(&mut self, stream: usize) -> Result<(), CoreError> {
        self.ctx.clear_kv_cache_seq(Some(stream as u32), None, None).map_err(decode_err)?;
        Ok(())
    }
}

impl Generator {
    /// Tokenizes and checks `req` for a stream of `positions` cells: a non-empty prompt that
    /// fits with its `max_tokens`, a valid constraint.
    pub(crate) fn prepare(
        &self,
        req: &GenerateRequest,
        positions: usize,
    ) -> Result<Sequence, CoreError> {
        let prompt = self.tokenize_prompt(&req.prompt, req.special_tokens);
        if prompt.is_empty() {
            return Err(CoreError::Prompt("prompt produced no tokens".into()));
        }
        let n_ctx = positions.min(N_CTX as usize);
        if prompt.len() + req.max_tokens as usize > n_ctx {
            return Err(CoreError::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens: req.max_tokens,
                n_ctx: n_ctx as u32,
            });
        }
        let guide = req.constraint.as_ref().map(|c| self.guide(c, req.max_tokens)).transpose()?;
        Ok(Sequence::new(prompt, req.max_tokens, guide))
    }
}

/// Where the chunk of a prompt of `len` tokens that starts at `from` ends: prompts are fed to
/// llama.cpp in chunks of [`PROMPT_CHUNK`] tokens from position 0 (the last one shorter).
fn chunk_end(from: usize, len: usize) -> usize {
    (from + PROMPT_CHUNK).min(len)
}

/// Longest piece of a chunk that a filling prompt feeds between two decode steps (see
/// [`piece_end`]).
const FILL_PIECE: usize = 256;

/// Where the piece of a filling prompt of `len` tokens that starts at `from` ends: its chunk
/// ([`chunk_end`]) whole when it has at most [`FILL_PIECE`] tokens, else cut in two halves.
///
/// Determinism: ggml's flash attention computes every query of a chunk of 64 tokens or more in
/// tiles, whose rounding does not depend on how many queries share the call, and every query
/// of a shorter chunk one at a time; the halves of a chunk of more than 256 tokens have 128 or
/// more each, so each query takes the kernel it takes in the whole chunk. Measured: the logits
/// of 798- and 1 500-token prompts fed in halves (or in 64-token pieces) equal those fed in
/// 512-token chunks bit for bit; a 30-token last piece cut from a 286-token chunk differs.
fn piece_end(from: usize, len: usize) -> usize {
    let start = from - from % PROMPT_CHUNK;
    let end = chunk_end(start, len);
    let n = end - start;
    if n <= FILL_PIECE || from > start {
        end
    } else {
        start + n / 2
    }
}

/// A request whose prompt is prefilled a piece per step: its caller, its sequence, and how
/// many prompt tokens are in the filling stream.
struct Filling<C> {
    caller: C,
    seq: Sequence,
    fed: usize,
}

/// Decoding state of one request.
pub(crate) struct Sequence {
    pub(crate) prompt: Vec<LlamaToken>,
    pub(crate) max_tokens: u32,
    /// Position of the next token to decode.
    pos: i32,
    /// The latest chosen token, already emitted, to be decoded in the next step.
    next: Option<LlamaToken>,
    out: Vec<u8>,
    /// Bytes of `out` already handed to the caller as text pieces.
    streamed: usize,
    generated: u32,
    /// Constraint state, for a constrained request.
    guide: Option<Guide>,
    /// A per-request failure during decoding; the sequence stops.
    error: Option<CoreError>,
}

impl Sequence {
    /// A sequence for `prompt` (already checked to fit), constrained by `guide` if any.
    pub(crate) fn new(prompt: Vec<LlamaToken>, max_tokens: u32, guide: Option<Guide>) -> Self {
        Self {
            prompt,
            max_tokens,
            pos: 0,
            next: None,
            out: Vec::new(),
            streamed: 0,
            generated: 0,
            guide,
            error: None,
        }
    }

    /// Picks the next token from `logits`: the largest logit, among the tokens the constraint
    /// allows for a constrained request.
    fn choose(&mut self, logits: &[f32]) {
        match &mut self.guide {
            None => self.next = Some(greedy(logits)),
            Some(guide) => match guide.choose(logits) {
                Ok(token) => self.next = Some(token),
                Err(e) => self.fail(e),
            },
        }
    }

    /// Emits the chosen token: returns whether the sequence goes on (the token is then decoded
    /// in the next step), or has ended — an end-of-generation token, `max_tokens` reached, the
    /// constraint complete, or a failure.
    fn accept(&mut self, vocab: &LlamaVocab, caller: &mut impl Caller) -> bool {
        let Some(token) = self.next else { return false };
        if vocab.is_eog(token) {
            if let Some(guide) = &mut self.guide {
                guide.end();
            }
            return false;
        }
        if let Some(guide) = &mut self.guide {
            if let Err(e) = guide.commit(token) {
                self.fail(e);
                return false;
            }
        }
        vocab.token_to_piece_into(token, &mut self.out, false, None);
        self.generated += 1;
        self.stream_to(caller, false);
        let complete = self.guide.as_ref().is_some_and(Guide::is_complete);
        !(complete || self.generated >= self.max_tokens)
    }

    /// Hands the caller the output decoded since the last piece: every complete character, or
    /// (at the `end`) the rest as [`String::from_utf8_lossy`] renders it.
    fn stream_to(&mut self, caller: &mut impl Caller, end: bool) {
        let (text, used) = utf8_piece(&self.out[self.streamed..], end);
        if used > 0 {
            self.streamed += used;
            caller.piece(&text);
        }
    }

    /// Stops the sequence with a per-request error.
    fn fail(&mut self, e: CoreError) {
        self.error = Some(e);
        self.next = None;
    }

    /// The request's result once decoding stopped; first hands the caller the rest of the
    /// output (an incomplete character at the end, as [`String::from_utf8_lossy`] renders it),
    /// so that the pieces concatenate to the text.
    fn finish(mut self, caller: &mut impl Caller) -> Result<Generation, CoreError> {
        self.stream_to(caller, true);
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(guide) = self.guide {
            guide.finish(self.max_tokens)?;
        }
        Ok(Generation {
            text: String::from_utf8_lossy(&self.out).into_owned(),
            tokens: self.generated,
            prompt_tokens: self.prompt.len() as u32,
        })
    }
}

/// The text of the longest prefix of `bytes` that decodes the same whatever bytes follow —
/// valid characters and complete invalid sequences (each one U+FFFD, as
/// [`String::from_utf8_lossy`] renders it) — and its length in bytes; at the `end`, all of it.
fn utf8_piece(bytes: &[u8], end: bool) -> (String, usize) {
    let mut text = String::new();
    let mut used = 0;
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        used += chunk.valid().len();
        let invalid = chunk.invalid();
        if invalid.is_empty() {
            continue;
        }
        // an invalid tail may be the start of a character the next token completes
        let at_tail = used + invalid.len() == bytes.len();
        if at_tail
            && !end
            && std::str::from_utf8(invalid).err().is_some_and(|e| e.error_len().is_none())
        {
            break;
        }
        text.push(char::REPLACEMENT_CHARACTER);
        used += invalid.len();
    }
    (text, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in the given split points and returns the pieces' concatenation.
    fn streamed(bytes: &[u8], splits: &[usize]) -> String {
        let mut out = String::new();
        let mut streamed = 0;
        for &end in splits.iter().chain(std::iter::once(&bytes.len())) {
            let (text, used) = utf8_piece(&bytes[streamed..end], false);
            out.push_str(&text);
            streamed += used;
        }
        let (text, used) = utf8_piece(&bytes[streamed..], true);
        assert_eq!(streamed + used, bytes.len());
        out + &text
    }

    #[test]
    fn pieces_concatenate_to_the_lossy_text_wherever_tokens_split() {
        let cases: [&[u8]; 5] = [
            "héllo wörld €".as_bytes(),
            b"ab\xffcd",
            b"\xe2\x82",
            b"x\xe2\x82\xacy\xf0\x9f\x98",
            b"\xc3\x28\xe2\x28\xa1",
        ];
        for bytes in cases {
            let whole = String::from_utf8_lossy(bytes).into_owned();
            for a in 0..=bytes.len() {
                for b in a..=bytes.len() {
                    assert_eq!(streamed(bytes, &[a, b]), whole, "{bytes:?} split at {a}, {b}");
                }
            }
        }
    }

    #[test]
    fn a_filling_prompt_is_fed_in_pieces_that_keep_each_query_on_its_kernel() {
        for len in 1..=1600 {
            let mut from = 0;
            while from < len {
                let end = piece_end(from, len);
                let chunk = (from / PROMPT_CHUNK, chunk_end(from - from % PROMPT_CHUNK, len));
                assert!(end > from && end <= len, "len {len}: piece {from}..{end}");
                assert_eq!(
                    (end - 1) / PROMPT_CHUNK,
                    chunk.0,
                    "len {len}: {from}..{end} spans chunks"
                );
                assert!(end - from <= FILL_PIECE, "len {len}: piece {from}..{end} too long");
                // a piece is shorter than a flash-attention tile only if its whole chunk is
                let whole = chunk.1 - (from - from % PROMPT_CHUNK);
                assert!(
                    end - from >= 64 || whole < 64,
                    "len {len}: piece {from}..{end} of {whole}"
                );
                from = end;
            }
        }
    }

    #[test]
    fn an_incomplete_character_waits_for_its_next_bytes() {
        assert_eq!(utf8_piece(b"a\xe2\x82", false), ("a".to_owned(), 1));
        assert_eq!(utf8_piece(b"a\xe2\x82", true), ("a\u{fffd}".to_owned(), 3));
        assert_eq!(utf8_piece(b"a\xff", false), ("a\u{fffd}".to_owned(), 2));
    }
}
