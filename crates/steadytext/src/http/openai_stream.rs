//! The response shapes of the OpenAI-compatible generation endpoints — whole responses and
//! server-sent-event chunks — and the streaming of a generation as those chunks while it is
//! decoded.
//!
//! A streamed response is driven by the request's own future: the engine sends each decoded
//! piece to the request's sink, the SSE body forwards it as one chunk, and when the client goes
//! away the body is dropped with the future in it, which the engine sees as an abandoned
//! request (stopped before its next decode step). The pieces of a request concatenate to the
//! text the same request returns unstreamed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use steadytext_api::limits::DEFAULT_MAX_TOKENS;
use steadytext_api::wire::{ErrorInfo, ErrorReply, GenerateBody};
use tokio::sync::mpsc;

use crate::engine_host::GenerateOptions;
use crate::error::DaemonError;
use crate::service::{Completion, Service, Usage};

/// Which OpenAI endpoint a response belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/completions` (`text_completion`).
    Completion,
    /// `/v1/chat/completions` (`chat.completion`, `chat.completion.chunk`).
    Chat,
}

/// What every response (and chunk) of one request carries: its id, creation time, model, and
/// the token budget that tells `length` from `stop`.
#[derive(Debug, Clone)]
pub struct Shape {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    max_tokens: i32,
}

impl Shape {
    /// The shape of a response of `kind` by `model`, for a request of `max_tokens` (default
    /// 512), created now.
    pub fn new(kind: Kind, model: String, max_tokens: Option<i32>) -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let prefix = match kind {
            Kind::Completion => "cmpl",
            Kind::Chat => "chatcmpl",
        };
        Self {
            kind,
            id: format!("{prefix}-steadytext-{:x}", since.as_nanos()),
            created: since.as_secs(),
            model,
            max_tokens: max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        }
    }

    /// `length` when the output used the whole token budget, else `stop`.
    fn finish_reason(&self, c: &Completion) -> &'static str {
        if i64::from(c.usage.completion_tokens) >= i64::from(self.max_tokens) {
            "length"
        } else {
            "stop"
        }
    }

    /// The whole (unstreamed) response: one choice per completion, `usage` summed.
    pub fn response(&self, completions: &[Completion]) -> Value {
        let choices: Vec<Value> = completions
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let reason = self.finish_reason(c);
                match self.kind {
                    Kind::Completion => json!({"text": c.reply.text, "index": index,
                                               "logprobs": null, "finish_reason": reason}),
                    Kind::Chat => json!({"index": index, "logprobs": null, "finish_reason": reason,
                                         "message": {"role": "assistant",
                                                     "content": c.reply.text}}),
                }
            })
            .collect();
        let total = completions.iter().fold(Usage::default(), |sum, c| Usage {
            prompt_tokens: sum.prompt_tokens + c.usage.prompt_tokens,
            completion_tokens: sum.completion_tokens + c.usage.completion_tokens,
        });
        let object = match self.kind {
            Kind::Completion => "text_completion",
            Kind::Chat => "chat.completion",
        };
        let mut response = self.envelope(object, choices);
        response["usage"] = usage_json(total);
        response
    }

    /// The fields every response and chunk has, with its `object` and `choices`.
    fn envelope(&self, object: &str, choices: Vec<Value>) -> Value {
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model,
               "choices": choices})
    }

    /// One chunk with a single choice: `text` (or, in a chat, the `delta`) and `finish_reason`.
    fn chunk(&self, text: &str, delta: Value, finish_reason: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Completion => json!({"text": text, "index": 0, "logprobs": null,
                                       "finish_reason": finish_reason}),
            Kind::Chat => json!({"index": 0, "delta": delta, "logprobs": null,
                                 "finish_reason": finish_reason}),
        };
        self.envelope(self.chunk_object(), vec![choice])
    }

    fn chunk_object(&self) -> &'static str {
        match self.kind {
            Kind::Completion => "text_completion",
            Kind::Chat => "chat.completion.chunk",
        }
    }

    /// The chunks before the first piece: a chat's opens the assistant's message.
    pub fn opening(&self) -> Vec<Value> {
        match self.kind {
            Kind::Completion => Vec::new(),
            Kind::Chat => vec![self.chunk("", json!({"role": "assistant", "content": ""}), None)],
        }
    }

    /// The chunk of one decoded piece of text.
    pub fn piece(&self, text: &str) -> Value {
        self.chunk(text, json!({"content": text}), None)
    }

    /// The chunks after the last piece: the one with the `finish_reason`, then, when asked,
    /// one with no choices and the request's `usage`.
    pub fn closing(&self, c: &Completion, include_usage: bool) -> Vec<Value> {
        let mut chunks = vec![self.chunk("", json!({}), Some(self.finish_reason(c)))];
        if include_usage {
            let mut usage = self.envelope(self.chunk_object(), Vec::new());
            usage["usage"] = usage_json(c.usage);
            chunks.push(usage);
        }
        chunks
    }

    /// The SSE events of one step of a streamed generation; `[DONE]` after its end, an error
    /// object (the daemon's error reply) instead when it failed midway.
    fn events(&self, progress: Progress, include_usage: bool) -> Vec<Event> {
        let data = |v: Value| Event::default().data(v.to_string());
        match progress {
            Progress::Piece(text) => vec![data(self.piece(&text))],
            Progress::Done(c) => {
                let mut events: Vec<Event> =
                    self.closing(&c, include_usage).into_iter().map(data).collect();
                events.push(Event::default().data("[DONE]"));
                events
            }
            Progress::Failed(e) => {
                let reply =
                    ErrorReply { error: ErrorInfo { code: e.code(), message: e.to_string() } };
                vec![data(serde_json::to_value(reply).expect("an error reply serialises"))]
            }
        }
    }
}

/// OpenAI's `usage` object.
fn usage_json(u: Usage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
           "total_tokens": u.prompt_tokens + u.completion_tokens})
}

/// One step of a streamed generation.
#[derive(Debug)]
enum Progress {
    /// A decoded piece of the text.
    Piece(String),
    /// The end: the whole completion.
    Done(Completion),
    /// The end: the generation failed.
    Failed(DaemonError),
}

/// The state of [`progress`]: the generation running, or its last steps to hand out.
enum Running<F> {
    Generating(std::pin::Pin<Box<F>>, mpsc::UnboundedReceiver<String>),
    Ending(VecDeque<Progress>),
}

/// The pieces `generation` sends to the sink of `pieces` as they arrive, then its result.
/// Polling the stream drives the generation; dropping it drops the generation.
fn progress<F>(
    generation: F,
    pieces: mpsc::UnboundedReceiver<String>,
) -> impl Stream<Item = Progress> + Send
where
    F: Future<Output = Result<Completion, DaemonError>> + Send,
{
    let start = Running::Generating(Box::pin(generation), pieces);
    stream::unfold(start, |state| async move {
        match state {
            Running::Generating(mut generation, mut pieces) => {
                tokio::select! {
                    biased;
                    Some(piece) = pieces.recv() => {
                        Some((Progress::Piece(piece), Running::Generating(generation, pieces)))
                    }
                    result = &mut generation => {
                        // every piece was sent before the result: the unread ones are queued
                        let mut rest: VecDeque<Progress> = VecDeque::new();
                        while let Ok(piece) = pieces.try_recv() {
                            rest.push_back(Progress::Piece(piece));
                        }
                        rest.push_back(match result {
                            Ok(c) => Progress::Done(c),
                            Err(e) => Progress::Failed(e),
                        });
                        let first = rest.pop_front().expect("the result is queued");
                        Some((first, Running::Ending(rest)))
                    }
                }
            }
            Running::Ending(mut rest) => rest.pop_front().map(|p| (p, Running::Ending(rest))),
        }
    })
}

/// Generates `body` as a streamed response of `shape`: server-sent events, one chunk per
/// decoded piece, the closing chunks, `[DONE]`. A request that fails before its first piece
/// (an invalid argument, a prompt too long) gets the daemon's error reply and status instead.
pub async fn stream(
    service: Service,
    body: GenerateBody,
    special_tokens: bool,
    shape: Shape,
    include_usage: bool,
) -> Result<Response, DaemonError> {
    let (sink, pieces) = mpsc::unbounded_channel();
    let options = GenerateOptions { priority: 0, sink: Some(sink) };
    let generation = async move { service.complete(body, special_tokens, options).await };
    let mut steps = Box::pin(progress(generation, pieces));
    let first = steps.next().await.expect("a progress stream ends with its result");
    if let Progress::Failed(e) = first {
        return Err(e);
    }
    let opening: Vec<Event> =
        shape.opening().into_iter().map(|v| Event::default().data(v.to_string())).collect();
    let events = stream::iter(opening)
        .chain(
            stream::once(async { first })
                .chain(steps)
                .flat_map(move |p| stream::iter(shape.events(p, include_usage))),
        )
        .map(Ok::<Event, Infallible>);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

#[cfg(test)]
mod tests {
    use steadytext_api::wire::GenerateReply;

    use super::*;

    fn completion(text: &str, prompt_tokens: u32, completion_tokens: u32) -> Completion {
        Completion {
            reply: GenerateReply { text: text.into(), tokens: completion_tokens, cached: false },
            usage: Usage { prompt_tokens, completion_tokens },
        }
    }

    fn without_id(mut v: Value) -> Value {
        assert!(v["id"].as_str().is_some_and(|id| id.contains("-steadytext-")), "{v}");
        assert!(v["created"].as_u64().is_some_and(|t| t > 1_700_000_000), "{v}");
        let o = v.as_object_mut().unwrap();
        o.remove("id");
        o.remove("created");
        v
    }

    #[test]
    fn chat_chunks_open_with_the_role_carry_deltas_and_close_with_the_reason_and_usage() {
        let shape = Shape::new(Kind::Chat, "gemma".into(), Some(4));
        let base = json!({"object": "chat.completion.chunk", "model": "gemma"});
        let with = |choices: Value| {
            let mut v = base.clone();
            v["choices"] = choices;
            v
        };
        assert_eq!(
            shape.opening().into_iter().map(without_id).collect::<Vec<_>>(),
            vec![with(json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "logprobs": null, "finish_reason": null}]))]
        );
        assert_eq!(
            without_id(shape.piece(" Paris")),
            with(json!([{"index": 0, "delta": {"content": " Paris"}, "logprobs": null,
                         "finish_reason": null}]))
        );
        let closing: Vec<Value> =
            shape.closing(&completion("x", 7, 4), true).into_iter().map(without_id).collect();
        let mut usage = with(json!([]));
        usage["usage"] = json!({"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11});
        assert_eq!(
            closing,
            vec![
                with(json!([{"index": 0, "delta": {}, "logprobs": null,
                             "finish_reason": "length"}])),
                usage
            ]
        );
        assert_eq!(shape.closing(&completion("x", 7, 3), false).len(), 1, "usage only if asked");
    }

    #[test]
    fn completion_chunks_carry_text_and_end_with_stop_below_the_budget() {
        let shape = Shape::new(Kind::Completion, "gemma".into(), None);
        assert!(shape.opening().is_empty());
        assert_eq!(
            without_id(shape.piece("ab")),
            json!({"object": "text_completion", "model": "gemma", "choices": [
                {"text": "ab", "index": 0, "logprobs": null, "finish_reason": null}]})
        );
        let closing = shape.closing(&completion("ab", 3, 2), false);
        assert_eq!(closing[0]["choices"][0]["finish_reason"], "stop");
        assert_eq!(closing[0]["choices"][0]["text"], "");
    }

    #[test]
    fn whole_responses_sum_usage_over_their_choices() {
        let shape = Shape::new(Kind::Completion, "gemma".into(), Some(2));
        let r = without_id(shape.response(&[completion("a", 3, 2), completion("b", 4, 1)]));
        assert_eq!(
            r,
            json!({"object": "text_completion", "model": "gemma",
                   "choices": [
                       {"text": "a", "index": 0, "logprobs": null, "finish_reason": "length"},
                       {"text": "b", "index": 1, "logprobs": null, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
        );
        let chat = Shape::new(Kind::Chat, "gemma".into(), None);
        let r = chat.response(&[completion("hi", 5, 1)]);
        assert_eq!(r["object"], "chat.completion");
        assert_eq!(r["choices"][0]["message"], json!({"role": "assistant", "content": "hi"}));
    }

    #[tokio::test]
    async fn progress_hands_out_every_piece_before_the_result() {
        let (sink, pieces) = mpsc::unbounded_channel();
        let generation = async move {
            for p in ["a", "b", "c"] {
                sink.send(p.to_owned()).unwrap();
            }
            Ok(completion("abc", 1, 3))
        };
        let steps: Vec<Progress> = progress(generation, pieces).collect().await;
        let texts: Vec<String> = steps
            .iter()
            .map(|p| match p {
                Progress::Piece(t) => t.clone(),
                Progress::Done(c) => format!("done:{}", c.reply.text),
                Progress::Failed(e) => format!("failed:{e}"),
            })
            .collect();
        assert_eq!(texts, ["a", "b", "c", "done:abc"]);
    }
}
