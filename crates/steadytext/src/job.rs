//! One queue job: its row's `parameters` (SQL argument names) turned into the same service call
//! a synchronous request makes, and the result turned into the text stored in `result`
//! (text; pgvector literal for embeddings; JSON for rerank).

use serde::de::DeserializeOwned;
use serde_json::Value;
use steadytext_api::wire::{ConstraintBody, EmbedBody, GenerateBody, RerankBody};
use steadytext_core::embed::pgvector_text;

use crate::engine_host::GenerateOptions;
use crate::error::DaemonError;
use crate::service::Service;

/// A claimed row of steadytext_queue (the columns the worker needs).
#[derive(Debug, Clone)]
pub struct Job {
    /// request_id, as text.
    pub request_id: String,
    /// function_name.
    pub function: String,
    /// parameters.
    pub parameters: Value,
    /// Attempts that already failed.
    pub retry_count: i32,
    /// The request's own retry limit.
    pub max_retries: i32,
    /// The row's priority (the engine admits higher first when generations wait).
    pub priority: i32,
}

fn bad(function: &str, reason: impl ToString) -> DaemonError {
    DaemonError::BadJob { function: function.to_owned(), reason: reason.to_string() }
}

fn parse<T: DeserializeOwned>(function: &str, params: &Value) -> Result<T, DaemonError> {
    serde_json::from_value(params.clone()).map_err(|e| bad(function, e))
}

fn field(function: &str, params: &Value, name: &str) -> Result<Value, DaemonError> {
    params.get(name).cloned().ok_or_else(|| bad(function, format!("missing {name}")))
}

/// Runs the job through the service and returns its result text; a generation waits for the
/// engine at `priority` (the row's).
pub async fn run(
    service: &Service,
    function: &str,
    params: &Value,
    priority: i32,
) -> Result<String, DaemonError> {
    let generate = |constraint: Option<ConstraintBody>| -> Result<GenerateBody, DaemonError> {
        let mut body: GenerateBody = parse(function, params)?;
        body.constraint = constraint;
        Ok(body)
    };
    let body = match function {
        "generate" => generate(None)?,
        "generate_json" => {
            generate(Some(ConstraintBody::Json { schema: field(function, params, "schema")? }))?
        }
        "generate_regex" => generate(Some(ConstraintBody::Regex {
            pattern: parse(function, &field(function, params, "pattern")?)?,
        }))?,
        "generate_choice" => generate(Some(ConstraintBody::Choice {
            choices: parse(function, &field(function, params, "choices")?)?,
        }))?,
        "embed" => {
            let text: String = parse(function, &field(function, params, "text_input")?)?;
            let use_cache = params.get("use_cache").and_then(Value::as_bool).unwrap_or(true);
            let seed = params.get("seed").and_then(Value::as_i64).unwrap_or(42) as i32;
            let reply = service.embed(EmbedBody { texts: vec![text], use_cache, seed }).await?;
            return Ok(pgvector_text(&reply.embeddings[0]));
        }
        "rerank" => {
            let body: RerankBody = parse(function, params)?;
            let documents = body.documents.clone();
            let reply = service.rerank(body).await?;
            return Ok(reply.result_json(&documents));
        }
        other => return Err(bad(other, "unknown function_name")),
    };
    let options = GenerateOptions { priority, sink: None };
    Ok(service.generate_with(body, options).await?.text)
}
