//! The `steadytext_*_async` functions: validate a request, queue it, return its id at once.
//! Workers (`steadytext worker`) pick requests up after the enqueueing transaction commits.
//!
//! Each function builds the typed payload of `steadytext-api` ([`QueuedRequest`]), which checks
//! its arguments with the same rules the daemon applies and writes `function_name` and
//! `parameters` exactly as the worker reads them back.

use std::cell::RefCell;
use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::BuiltinOid::{INT4OID, JSONBOID, TEXTOID};
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{JsonB, PgOid, Uuid};
use serde_json::Value;
use steadytext_api::limits::DEFAULT_SEED;
use steadytext_api::queue_request::{
    ChoiceParams, EmbedParams, Function, JsonParams, QueuedRequest, RegexParams,
};
use steadytext_api::validate::{check_priority, check_texts};
use steadytext_api::wire::{GenerationParams, RerankBody};

use crate::error::{or_raise, required, required_elements, SqlError};
use crate::gucs;
use crate::queue_depth;

/// The two insert statements of an enqueue, each prepared once per backend.
#[derive(Debug, Clone, Copy)]
enum Insert {
    /// One request; returns its id.
    One = 0,
    /// One request per element of the jsonb array `$2`; returns their ids in its order.
    Many = 1,
}

impl Insert {
    /// The statement; `$1` function name, `$2` parameters, `$3` priority, `$4` max_retries.
    fn sql(self) -> &'static str {
        match self {
            Insert::One => {
                "INSERT INTO steadytext_queue (function_name, parameters, priority, max_retries)
                 VALUES ($1, $2, $3, $4) RETURNING request_id"
            }
            Insert::Many => {
                "WITH items AS MATERIALIZED (
                     SELECT gen_random_uuid() AS request_id, p, n
                     FROM jsonb_array_elements($2) WITH ORDINALITY AS t(p, n)
                 ), inserted AS (
                     INSERT INTO steadytext_queue
                         (request_id, function_name, parameters, priority, max_retries)
                     SELECT request_id, $1, p, $3, $4 FROM items ORDER BY n
                 )
                 SELECT array_agg(request_id ORDER BY n) FROM items"
            }
        }
    }

    /// Runs the statement with `args` (preparing and keeping its plan on first use) and returns
    /// the first column of its single row.
    fn run<T: FromDatum + IntoDatum>(
        self,
        args: &[DatumWithOid<'_>],
    ) -> Result<Option<T>, SqlError> {
        Spi::connect_mut(|client| {
            let kept = PLANS.with_borrow(|plans| plans[self as usize].clone());
            let plan = match kept {
                Some(plan) => plan,
                None => {
                    let types = [TEXTOID, JSONBOID, INT4OID, INT4OID].map(PgOid::BuiltIn);
                    let plan = Rc::new(client.prepare_mut(self.sql(), &types)?.keep());
                    PLANS.with_borrow_mut(|plans| plans[self as usize] = Some(plan.clone()));
                    plan
                }
            };
            // no borrow of PLANS is held while it runs (a trigger could enqueue again)
            let table = client.update(&*plan, Some(1), args)?;
            Ok(table.first().get_one::<T>()?)
        })
    }
}

thread_local! {
    /// The kept plans of [`Insert::One`] and [`Insert::Many`], for the backend's life
    /// (PostgreSQL's plan cache revalidates them when the table or `search_path` changes).
    static PLANS: RefCell<[Option<Rc<OwnedPreparedStatement>>; 2]> =
        const { RefCell::new([None, None]) };
}

/// Validates `requests` (all for `function`) and inserts one queue row each (same order) with
/// `priority`, after checking `steadytext.max_queue_size` (see `queue_depth` for how exactly);
/// wakes workers with `NOTIFY steadytext_jobs` (delivered at commit, once per transaction).
/// Returns the new request ids in order.
fn enqueue(
    function: Function,
    requests: Vec<QueuedRequest>,
    priority: Option<i32>,
) -> Result<Vec<Uuid>, SqlError> {
    let priority = required("priority", priority)?;
    check_priority(priority)?;
    let mut params = Vec::with_capacity(requests.len());
    for request in &requests {
        debug_assert_eq!(request.function(), function);
        request.validate()?;
        params.push(request.parameters());
    }
    queue_depth::admit(params.len(), gucs::max_queue_size())?;
    let args = |params: Value| -> [DatumWithOid<'static>; 4] {
        [
            function.sql_name().into(),
            JsonB(params).into(),
            priority.into(),
            gucs::max_retries().into(),
        ]
    };
    let ids = if params.len() == 1 {
        let param = params.pop().expect("one request");
        Insert::One.run::<Uuid>(&args(param))?.into_iter().collect()
    } else {
        Insert::Many.run::<Vec<Uuid>>(&args(Value::Array(params)))?.unwrap_or_default()
    };
    notify_workers();
    Ok(ids)
}

/// `NOTIFY steadytext_jobs` through `pg_notify` itself, without parsing a statement; PostgreSQL
/// folds repeats within a transaction into one notification.
fn notify_workers() {
    // SAFETY: pg_notify is a plain V1 function; pgrx's binding catches its errors.
    unsafe {
        pgrx::direct_function_call::<()>(
            pg_sys::pg_notify,
            &["steadytext_jobs".into_datum(), None],
        );
    }
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
#[search_path(pg_catalog, @extschema@, pg_temp)]
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
#[search_path(pg_catalog, @extschema@, pg_temp)]
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
        let generation = generation(prompt, max_tokens, use_cache, seed)?;
        let JsonB(schema) = required("schema", schema)?;
        enqueue_one(QueuedRequest::GenerateJson(JsonParams { generation, schema }), priority)
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
        let generation = generation(prompt, max_tokens, use_cache, seed)?;
        let pattern = required("pattern", pattern)?;
        enqueue_one(QueuedRequest::GenerateRegex(RegexParams { generation, pattern }), priority)
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
        let generation = generation(prompt, max_tokens, use_cache, seed)?;
        let choices = required_elements("choices", choices)?;
        enqueue_one(QueuedRequest::GenerateChoice(ChoiceParams { generation, choices }), priority)
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
