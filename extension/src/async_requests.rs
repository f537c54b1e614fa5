//! The `steadytext_*_async` functions: validate a request, queue it, return its id at once.
//! Workers (`steadytext worker`) pick requests up after the enqueueing transaction commits.

use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use serde_json::{json, Value};
use steadytext_api::limits::{DEFAULT_MAX_TOKENS, DEFAULT_SEED};
use steadytext_api::validate::{
    check_choices, check_max_tokens_arg, check_pattern, check_priority, check_schema, check_text,
    check_texts,
};

use crate::error::{or_raise, required, required_elements, SqlError};
use crate::gucs;
use crate::queue_depth;

/// Inserts one queue row per element of `params` (same order), all with `function_name` and
/// `priority`, after checking `steadytext.max_queue_size`; wakes workers with
/// `NOTIFY steadytext_jobs` (delivered at commit). Returns the new request ids in order.
fn enqueue(function_name: &str, params: Vec<Value>, priority: i32) -> Result<Vec<Uuid>, SqlError> {
    check_priority(priority)?;
    let limit = gucs::max_queue_size();
    let depth = queue_depth::depth()?;
    if depth + params.len() as i64 > i64::from(limit) {
        return Err(SqlError::QueueFull { depth, adding: params.len(), limit });
    }
    let ids = Spi::get_one_with_args::<Vec<Uuid>>(
        "WITH items AS MATERIALIZED (
             SELECT gen_random_uuid() AS request_id, p, n
             FROM jsonb_array_elements($2) WITH ORDINALITY AS t(p, n)
         ), inserted AS (
             INSERT INTO steadytext_queue (request_id, function_name, parameters, priority, max_retries)
             SELECT request_id, $1, p, $3, $4 FROM items ORDER BY n
         )
         SELECT array_agg(request_id ORDER BY n) FROM items",
        &[
            function_name.into(),
            JsonB(Value::Array(params)).into(),
            priority.into(),
            gucs::max_retries().into(),
        ],
    )?
    .unwrap_or_default();
    queue_depth::added(ids.len());
    Spi::run("NOTIFY steadytext_jobs")?;
    Ok(ids)
}

/// Enqueues exactly one request.
fn enqueue_one(function_name: &str, params: Value, priority: i32) -> Result<Uuid, SqlError> {
    let ids = enqueue(function_name, vec![params], priority)?;
    Ok(ids[0])
}

/// The generation arguments shared by every generate function, checked.
struct GenerationArgs {
    max_tokens: i32,
    use_cache: bool,
    seed: i32,
    priority: i32,
}

impl GenerationArgs {
    fn new(
        max_tokens: Option<i32>,
        use_cache: Option<bool>,
        seed: Option<i32>,
        priority: Option<i32>,
    ) -> Result<Self, SqlError> {
        let max_tokens = required("max_tokens", max_tokens)?;
        check_max_tokens_arg(max_tokens)?;
        let priority = required("priority", priority)?;
        check_priority(priority)?;
        Ok(Self {
            max_tokens,
            use_cache: required("use_cache", use_cache)?,
            seed: required("seed", seed)?,
            priority,
        })
    }

    /// The parameters object: `extra` (e.g. prompt, schema) plus max_tokens, use_cache, seed.
    fn params(&self, extra: Value) -> Value {
        let mut p = extra;
        let o = p.as_object_mut().expect("params are built as objects");
        o.insert("max_tokens".into(), json!(self.max_tokens));
        o.insert("use_cache".into(), json!(self.use_cache));
        o.insert("seed".into(), json!(self.seed));
        p
    }
}

/// A required, non-empty prompt.
fn prompt_arg(prompt: Option<String>) -> Result<String, SqlError> {
    let prompt = required("prompt", prompt)?;
    check_text("prompt", &prompt)?;
    Ok(prompt)
}

/// Queues a text generation; returns its request id.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn steadytext_generate_async(
    prompt: Option<String>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let prompt = prompt_arg(prompt)?;
        let args = GenerationArgs::new(max_tokens, use_cache, seed, priority)?;
        enqueue_one("generate", args.params(json!({ "prompt": prompt })), args.priority)
    })())
}

/// Queues an embedding of `text_input`; returns its request id.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn steadytext_embed_async(
    text_input: Option<String>,
    use_cache: default!(Option<bool>, true),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let text_input = required("text_input", text_input)?;
        check_text("text_input", &text_input)?;
        let use_cache = required("use_cache", use_cache)?;
        let priority = required("priority", priority)?;
        let params = json!({ "text_input": text_input, "use_cache": use_cache });
        enqueue_one("embed", params, priority)
    })())
}

/// Queues a generation constrained to JSON valid against `schema`; returns its request id.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn steadytext_generate_json_async(
    prompt: Option<String>,
    schema: Option<JsonB>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let prompt = prompt_arg(prompt)?;
        let JsonB(schema) = required("schema", schema)?;
        check_schema(&schema)?;
        let args = GenerationArgs::new(max_tokens, use_cache, seed, priority)?;
        let params = args.params(json!({ "prompt": prompt, "schema": schema }));
        enqueue_one("generate_json", params, args.priority)
    })())
}

/// Queues a generation constrained to match the regular expression `pattern`.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn steadytext_generate_regex_async(
    prompt: Option<String>,
    pattern: Option<String>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let prompt = prompt_arg(prompt)?;
        let pattern = required("pattern", pattern)?;
        check_pattern(&pattern)?;
        let args = GenerationArgs::new(max_tokens, use_cache, seed, priority)?;
        let params = args.params(json!({ "prompt": prompt, "pattern": pattern }));
        enqueue_one("generate_regex", params, args.priority)
    })())
}

/// Queues a generation that answers with exactly one of `choices`.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn steadytext_generate_choice_async(
    prompt: Option<String>,
    choices: Option<Vec<Option<String>>>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
    priority: default!(Option<i32>, 0),
) -> Uuid {
    or_raise((|| {
        let prompt = prompt_arg(prompt)?;
        let choices = required_elements("choices", choices)?;
        check_choices(&choices)?;
        let args = GenerationArgs::new(max_tokens, use_cache, seed, priority)?;
        let params = args.params(json!({ "prompt": prompt, "choices": choices }));
        enqueue_one("generate_choice", params, args.priority)
    })())
}

/// Queues one text generation per prompt; returns their ids in the order of `prompts`.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
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
        let args = GenerationArgs::new(max_tokens, use_cache, seed, priority)?;
        let params = prompts.into_iter().map(|p| args.params(json!({ "prompt": p }))).collect();
        enqueue("generate", params, args.priority)
    })())
}

/// Queues one embedding per text; returns their ids in the order of `texts`.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn steadytext_embed_batch_async(
    texts: Option<Vec<Option<String>>>,
    use_cache: default!(Option<bool>, true),
    priority: default!(Option<i32>, 0),
) -> Vec<Uuid> {
    or_raise((|| {
        let texts = required_elements("texts", texts)?;
        check_texts("texts", &texts, false)?;
        let use_cache = required("use_cache", use_cache)?;
        let priority = required("priority", priority)?;
        let params =
            texts.into_iter().map(|t| json!({ "text_input": t, "use_cache": use_cache })).collect();
        enqueue("embed", params, priority)
    })())
}

/// Queues a reranking of `documents` against `query`; the result is JSON.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
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
        let query = required("query", query)?;
        check_text("query", &query)?;
        let documents = required_elements("documents", documents)?;
        check_texts("documents", &documents, false)?;
        let task = required("task", task)?;
        let params = json!({
            "query": query,
            "documents": documents,
            "task": task,
            "use_cache": required("use_cache", use_cache)?,
            "seed": required("seed", seed)?,
        });
        enqueue_one("rerank", params, required("priority", priority)?)
    })())
}

// The SQL defaults above repeat these shared constants (pgrx needs literals); keep them equal.
const _: () = assert!(DEFAULT_MAX_TOKENS == 512 && DEFAULT_SEED == 42);
