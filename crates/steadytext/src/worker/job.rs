//! One queue job: its row's typed payload ([`QueuedRequest`]) turned into the same service call
//! a synchronous request makes, and the result turned into the text stored in `result`
//! (text; pgvector literal for embeddings; JSON for rerank and for chunked embeddings).

use steadytext_api::function::Function;
use steadytext_api::queue_request::{ChunkResult, QueuedRequest, ServiceCall};
use steadytext_api::vector_text;

use crate::engine_host::GenerateOptions;
use crate::error::DaemonError;
use crate::service::Service;

/// A claimed row of steadytext_queue (the columns the worker needs).
#[derive(Debug, Clone)]
pub struct Job {
    /// request_id, as text.
    pub request_id: String,
    /// The request: function_name with its parameters.
    pub request: QueuedRequest,
    /// The row's priority (the engine admits higher first when generations wait).
    pub priority: i32,
}

/// The half slots a request other than an embedding takes (an embedding takes one): what the
/// worker passes as `steadytext_queue_claim`'s `other_cost`, its free half slots as `batch_size`.
pub const OTHER_COST: usize = 2;

impl Job {
    /// The job's function (the metrics label and notification's `function`).
    pub fn function(&self) -> Function {
        self.request.function()
    }

    /// The half slots it takes: one for an embedding (the claim's function name `embed`),
    /// [`OTHER_COST`] for anything else.
    pub fn cost(&self) -> usize {
        if self.function() == Function::Embed {
            1
        } else {
            OTHER_COST
        }
    }
}

/// Runs the request through the service and returns its result text; a generation waits for
/// the engine at `priority` (the row's).
pub async fn run(
    service: &Service,
    request: QueuedRequest,
    priority: i32,
) -> Result<String, DaemonError> {
    match request.into_call() {
        ServiceCall::Generate(body) => {
            let options = GenerateOptions { priority, sink: None };
            Ok(service.generate_with(body, options).await?.text)
        }
        ServiceCall::Embed(body) => {
            let reply = service.embed(body).await?;
            Ok(vector_text::format(&reply.embeddings[0]))
        }
        ServiceCall::Rerank(body) => {
            let documents = body.documents.clone();
            let reply = service.rerank(body).await?;
            Ok(reply.result_json(&documents))
        }
        ServiceCall::EmbedChunks(params) => {
            let chunks: Vec<ChunkResult> = service
                .embed_chunks(params)
                .await?
                .into_iter()
                .map(|(text, v)| ChunkResult { text, embedding: vector_text::format(&v) })
                .collect();
            Ok(serde_json::to_string(&chunks).expect("chunks serialise"))
        }
    }
}
