//! The packaged Gemma 3 270M generation model, loaded the one way every test loads it.

use std::path::PathBuf;
use std::sync::OnceLock;

use steadytext_core::models::{ModelDir, GEMMA3_270M};
use steadytext_core::Generator;

/// Path of the packaged Gemma model in the model directory; panics naming scripts/setup when it
/// is missing (a missing model fails the tests, it never skips them).
pub fn path() -> PathBuf {
    ModelDir::resolve()
        .expect("a model directory")
        .locate(&GEMMA3_270M)
        .expect("packaged Gemma model missing: run scripts/setup")
}

/// A freshly loaded generator on `threads` threads.
pub fn load(threads: usize) -> Generator {
    Generator::load(&path(), threads).expect("model loads")
}

/// One generator on 2 threads, loaded on first use and shared by the tests of a test binary
/// (they run on parallel threads).
pub fn shared() -> &'static Generator {
    static GENERATOR: OnceLock<Generator> = OnceLock::new();
    GENERATOR.get_or_init(|| load(2))
}
