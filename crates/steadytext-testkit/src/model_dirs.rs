//! Private model directories for tests that must start from a known state (e.g. "not imported
//! yet"), linking to the packaged model folders that scripts/setup unpacks.

use std::path::PathBuf;

/// Folder of the packaged all-MiniLM-L6-v2 inside a model directory.
pub const MINILM_FOLDER: &str = "all-MiniLM-L6-v2";

/// The shared model directory, by the one rule of [`steadytext_api::model_dir`].
pub fn shared_model_dir() -> PathBuf {
    steadytext_api::model_dir::resolve().expect("a model directory")
}

/// A fresh model directory holding (a link to) the packaged all-MiniLM-L6-v2 folder and
/// nothing else; panics naming scripts/setup when the folder is missing.
pub fn minilm_only() -> tempfile::TempDir {
    let source = shared_model_dir().join(MINILM_FOLDER);
    assert!(
        source.join("model.safetensors").exists(),
        "all-MiniLM-L6-v2 folder missing at {}: run scripts/setup",
        source.display()
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::os::unix::fs::symlink(&source, dir.path().join(MINILM_FOLDER)).expect("a symlink");
    dir
}
