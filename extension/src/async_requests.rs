//! The `steadytext_*_async` functions: validate a request, queue it, return its id at once.
//! Workers (`steadytext worker`) pick requests up after the enqueueing transaction commits.
//!
//! Each function builds the typed payload of `steadytext-api` ([`QueuedRequest`]), which checks
//! its arguments with the same rules the daemon applies and writes `function_name` and
//! `parameters` exactly as the worker reads them back.

use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use steadytext_api::function::Function;
use steadytext_api::limits::DEFAULT_SEED;
use steadytext_api::queue_request::{
    ChoiceParams, EmbedParams, JsonParams, QueuedRequest, RegexParams,
};
use steadytext_api::validate::{check_priority, check_texts};
use steadytext_api::wire::{GenerationParams, RerankBody};

use crate::error::{or_raise, required, required_elements, SqlError};
use crate::{enqueue_buffer, gucs, queue_depth, queue_owner};

/// Validates `requests` (all for `function`) and queues one row each (same order) with
/// `priority`, after checking `steadytext.max_priority` (for roles that are not superusers) and
/// the queue limits `steadytext.max_queue_size` and `steadytext.max_queue_size_per_role` (see
/// `queue_depth` for how exactly);
/// the rows are written when the calling statement ends (`enqueue_buffer`), which wakes workers
/// with `NOTIFY steadytext_jobs` (delivered at commit). Returns the new request ids in order.
fn enqueue(
    function: Function,
    requests: Vec<QueuedRequest>,
    priority: Option<i32>,
) -> Result<Vec<Uuid>, SqlError> {
    let priority = required("priority", priority)?;
    check_priority(priority)?;
    let ceiling = gucs::max_priority();
    if priority > ceiling && !queue_owner::is_superuser(queue_owner::caller()) {
        return Err(SqlError::PriorityAboveCeiling { priority, limit: ceiling });
    }
    let mut params = Vec::with_capacity(requests.len());
    for request in &requests {
        debug_assert_eq!(request.function(), function);
        request.validate()?;
        params.push(request.parameters());
    }
    let limits = queue_depth::Limits {
        queue: gucs::max_queue_size(),
        per_role: gucs::max_queue_size_per_role(),
    };
    queue_depth::admit(params.len(), limits)?;
    enqueue_buffer::push(function, params, priority, gucs::max_retries())
}

/// Enqueues exactly one request.
fn enqueue_one(request: QueuedRequest, priority: Option<i32>) -> Result<Uuid, SqlError> {
    let ids = enqueue(request.function(), vec![request], priority)?;
    Ok(ids[0])
}

/// The generation arguments shared by every generate function, NULLs refused (the values are
/// checked with the whole request).
fn generation(
    prompt: Option<String>,
    max_tokens: Option<i32>,
    use_cache: Option<bool>,
    seed: Option<i32>,
) -> Result<GenerationParams, SqlError> {
    Ok(GenerationParams {
        prompt: required("prompt", prompt)?,
        max_tokens: required("max_tokens", max_tokens)?,
        use_cache: required("use_cache", use_cache)?,
        seed: required("seed", seed)?,
    })
}

/// Queues a text generation; returns its request id.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_generate_async(
    prompt: Option<String>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let params = generation(prompt, max_tokens, use_cache, seed)?;
        enqueue_one(QueuedRequest::Generate(params), priority)
    })())
}

/// Queues an embedding of `text_input`; returns its request id.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_embed_async(
    text_input: Option<String>,
    use_cache: default!(Option<bool>, true),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let params = EmbedParams {
            text_input: required("text_input", text_input)?,
            use_cache: required("use_cache", use_cache)?,
            seed: DEFAULT_SEED,
        };
        enqueue_one(QueuedRequest::Embed(params), priority)
    })())
}

/// Queues a generation constrained to JSON valid against `schema`; returns its request id.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_generate_json_async(
    prompt: Option<String>,
    schema: Option<JsonB>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let generation = generation(prompt, max_tokens, use_cache, seed)?;
        let JsonB(schema) = required("schema", schema)?;
        enqueue_one(QueuedRequest::GenerateJson(JsonParams { generation, schema }), priority)
    })())
}

/// Queues a generation constrained to match the regular expression `pattern`.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_generate_regex_async(
    prompt: Option<String>,
    pattern: Option<String>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let generation = generation(prompt, max_tokens, use_cache, seed)?;
        let pattern = required("pattern", pattern)?;
        enqueue_one(QueuedRequest::GenerateRegex(RegexParams { generation, pattern }), priority)
    })())
}

/// Queues a generation that answers with exactly one of `choices`.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_generate_choice_async(
    prompt: Option<String>,
    choices: Option<Vec<Option<String>>>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let generation = generation(prompt, max_tokens, use_cache, seed)?;
        let choices = required_elements("choices", choices)?;
        enqueue_one(QueuedRequest::GenerateChoice(ChoiceParams { generation, choices }), priority)
    })())
}

/// Queues one text generation per prompt; returns their ids in the order of `prompts`.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_generate_batch_async(
    prompts: Option<Vec<Option<String>>>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Vec<Uuid> {
    or_raise((|| {
        let prompts = required_elements("prompts", prompts)?;
        check_texts("prompts", &prompts, false)?;
        let (max_tokens, use_cache, seed) = (
            required("max_tokens", max_tokens)?,
            required("use_cache", use_cache)?,
            required("seed", seed)?,
        );
        let requests = prompts
            .into_iter()
            .map(|prompt| {
                QueuedRequest::Generate(GenerationParams { prompt, max_tokens, use_cache, seed })
            })
            .collect();
        enqueue(Function::Generate, requests, priority)
    })())
}

/// Queues one embedding per text; returns their ids in the order of `texts`.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_embed_batch_async(
    texts: Option<Vec<Option<String>>>,
    use_cache: default!(Option<bool>, true),
    priority: default!(Option<i32>, 0),
) -> Vec<Uuid> {
    or_raise((|| {
        let texts = required_elements("texts", texts)?;
        check_texts("texts", &texts, false)?;
        let use_cache = required("use_cache", use_cache)?;
        let requests = texts
            .into_iter()
            .map(|text_input| {
                QueuedRequest::Embed(EmbedParams { text_input, use_cache, seed: DEFAULT_SEED })
            })
            .collect();
        enqueue(Function::Embed, requests, priority)
    })())
}

/// Queues a reranking of `documents` against `query`; the result is JSON.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_rerank_async(
    query: Option<String>,
    documents: Option<Vec<Option<String>>>,
    task: default!(
        Option<String>,
        "'Given a web search query, retrieve relevant passages that answer the query'"
    ),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let body = RerankBody {
            query: required("query", query)?,
            documents: required_elements("documents", documents)?,
            task: required("task", task)?,
            use_cache: required("use_cache", use_cache)?,
            seed: required("seed", seed)?,
        };
        enqueue_one(QueuedRequest::Rerank(body), priority)
    })())
}
