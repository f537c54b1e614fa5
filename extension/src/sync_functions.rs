//! The synchronous SQL functions: validate the arguments, call the steadytext daemon (see
//! [`crate::daemon`]), return its result. No inference runs in the backend.

use pgrx::prelude::*;
use pgrx::JsonB;
use steadytext_api::wire::{ConstraintBody, EmbedBody, GenerateBody, GenerationParams, RerankBody};

use crate::daemon;
use crate::error::{or_raise, required, required_elements, SqlError};

/// Checks the prompt and generation arguments (NULLs here, values with the shared validation of
/// the request body) and calls the daemon.
fn generate(
    prompt: Option<String>,
    constraint: Option<ConstraintBody>,
    max_tokens: Option<i32>,
    use_cache: Option<bool>,
    seed: Option<i32>,
) -> Result<String, SqlError> {
    let body = GenerateBody {
        generation: GenerationParams {
            prompt: required("prompt", prompt)?,
            max_tokens: required("max_tokens", max_tokens)?,
            use_cache: required("use_cache", use_cache)?,
            seed: required("seed", seed)?,
        },
        constraint,
    };
    body.validate()?;
    daemon::call(move |c| c.generate(&body)).map(|r| r.text)
}

/// Generates text from `prompt` (greedy, deterministic; served from the cache when allowed).
#[pg_extern(volatile, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_generate(
    prompt: Option<String>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
) -> String {
    or_raise(generate(prompt, None, max_tokens, use_cache, seed))
}

/// Generates bare JSON valid against the JSON Schema `schema`.
#[pg_extern(volatile, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_generate_json(
    prompt: Option<String>,
    schema: Option<JsonB>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
) -> String {
    or_raise((|| {
        let JsonB(schema) = required("schema", schema)?;
        generate(prompt, Some(ConstraintBody::Json { schema }), max_tokens, use_cache, seed)
    })())
}

/// Generates text that fully matches the regular expression `pattern`.
#[pg_extern(volatile, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_generate_regex(
    prompt: Option<String>,
    pattern: Option<String>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
) -> String {
    or_raise((|| {
        let pattern = required("pattern", pattern)?;
        generate(prompt, Some(ConstraintBody::Regex { pattern }), max_tokens, use_cache, seed)
    })())
}

/// Answers `prompt` with exactly one of `choices`.
#[pg_extern(volatile, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_generate_choice(
    prompt: Option<String>,
    choices: Option<Vec<Option<String>>>,
    max_tokens: default!(Option<i32>, 512),
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
) -> String {
    or_raise((|| {
        let choices = required_elements("choices", choices)?;
        generate(prompt, Some(ConstraintBody::Choice { choices }), max_tokens, use_cache, seed)
    })())
}

/// Embeds `text_input`: a unit-length vector (384 dimensions with the packaged model).
#[pg_extern(volatile, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_embed(
    text_input: Option<String>,
    use_cache: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
) -> Vec<f32> {
    or_raise((|| {
        let body = EmbedBody {
            texts: vec![required("text_input", text_input)?],
            use_cache: required("use_cache", use_cache)?,
            seed: required("seed", seed)?,
        };
        body.validate()?;
        let mut reply = daemon::call(move |c| c.embed(&body))?;
        Ok(reply.embeddings.swap_remove(0))
    })())
}

/// Scores `documents` against `query`, best first. Without a reranker model the scores are
/// embedding cosine similarities, which a NOTICE reports.
#[pg_extern(volatile, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_rerank(
    query: Option<String>,
    documents: Option<Vec<Option<String>>>,
    task: default!(
        Option<String>,
        "'Given a web search query, retrieve relevant passages that answer the query'"
    ),
    return_scores: default!(Option<bool>, true),
    seed: default!(Option<i32>, 42),
) -> TableIterator<'static, (name!(document, String), name!(score, Option<f64>))> {
    let rows = or_raise((|| {
        let body = RerankBody {
            query: required("query", query)?,
            documents: required_elements("documents", documents)?,
            task: required("task", task)?,
            seed: required("seed", seed)?,
            use_cache: true,
        };
        let return_scores = required("return_scores", return_scores)?;
        body.validate()?;
        let docs = body.documents.clone();
        let reply = daemon::call(move |c| c.rerank(&body))?;
        if reply.method == "embedding-cosine" {
            notice!(
                "steadytext_rerank: no reranker model is installed; scores are embedding cosine \
                 similarities ({})",
                reply.model
            );
        }
        Ok(reply
            .ranking()
            .into_iter()
            .map(|i| (docs[i].clone(), return_scores.then_some(reply.scores[i])))
            .collect::<Vec<_>>())
    })());
    TableIterator::new(rows)
}
