//! `steadytext rerank`: documents ordered by relevance to a query, with the method used.

use std::io::Write;

use anyhow::Context;
use steadytext_core::registry::{self, Role};
use steadytext_core::rerank::Reranker;

use crate::cli::RerankArgs;

/// Runs `steadytext rerank`: prints `# method: <kind> (<model>)`, then one
/// `score<TAB>document` line per document, highest score first (ties in input order).
pub fn run(args: &RerankArgs) -> anyhow::Result<()> {
    let dir = args.engine.model_dir()?;
    let rerank = registry::choose_from(Role::Rerank, args.model.clone().map(Into::into))?;
    let embedding =
        registry::choose_from(Role::Embedding, args.embedding_model.clone().map(Into::into))?
            .context("no embedding model configured")?;
    let reranker = Reranker::load(rerank, embedding, &dir, args.engine.thread_policy())
        .with_context(|| {
            format!("loading the reranker (model directory {})", dir.path().display())
        })?;
    let documents: Vec<&str> = args.documents.iter().map(String::as_str).collect();
    let ranking = reranker.rerank(&args.query, &documents, &args.task)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "# method: {}", ranking.method)?;
    for (doc, score) in ranking.ranked(&documents) {
        writeln!(stdout, "{score}\t{doc}")?;
    }
    Ok(())
}
