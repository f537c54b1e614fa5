//! `steadytext embed`: embeddings of the given texts on the packaged embedding model, printed
//! in pgvector's text form, one line per text.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use steadytext_api::vector_text;
use steadytext_core::models::{ModelDir, MINILM_L6_V2};
use steadytext_core::Embedder;

use crate::cli::{EmbedArgs, EngineArgs};

/// Runs `steadytext embed`.
pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    let embedder = load_embedder(&args.engine)?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed_batch(&texts)?;
    let mut stdout = std::io::stdout().lock();
    for v in &vectors {
        writeln!(stdout, "{}", vector_text::format(v))?;
    }
    Ok(())
}

/// The imported GGUF, importing it first when only the packaged folder is present.
fn model_path(dir: &ModelDir) -> anyhow::Result<PathBuf> {
    let (path, imported) = dir.locate_or_import(&MINILM_L6_V2)?;
    if imported {
        eprintln!(
            "steadytext: {} was not imported yet; converted {} into {} (one time)",
            MINILM_L6_V2.name,
            dir.path().join(MINILM_L6_V2.folder).display(),
            path.display()
        );
    }
    Ok(path)
}

/// Loads the packaged embedding model (importing it on first use) with the engine settings.
pub fn load_embedder(engine: &EngineArgs) -> anyhow::Result<Embedder> {
    let path = model_path(&engine.model_dir()?)?;
    Embedder::load(&path, engine.thread_policy())
        .with_context(|| format!("loading {}", path.display()))
}
