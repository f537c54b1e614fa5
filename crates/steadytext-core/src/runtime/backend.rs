//! The process-wide llama.cpp backend (llama.cpp allows exactly one initialisation).

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;

use crate::CoreError;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// Returns the shared llama.cpp backend, initialising it (with llama.cpp's logging silenced
/// unless `STEADYTEXT_LLAMA_LOG=1`) on first use.
pub fn backend() -> Result<&'static LlamaBackend, CoreError> {
    BACKEND
        .get_or_init(|| {
            crate::kernels::pin();
            let verbose = std::env::var("STEADYTEXT_LLAMA_LOG").is_ok_and(|v| v == "1");
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(verbose),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| CoreError::Backend(e.clone()))
}

/// Loads a GGUF model file through the shared backend; a missing file is
/// [`CoreError::ModelMissing`], a file llama.cpp rejects is [`CoreError::ModelLoad`].
pub(crate) fn load_model(
    path: &std::path::Path,
) -> Result<llama_cpp_2::model::LlamaModel, CoreError> {
    if !path.exists() {
        return Err(CoreError::ModelMissing { path: path.to_owned() });
    }
    let params = llama_cpp_2::model::params::LlamaModelParams::default();
    llama_cpp_2::model::LlamaModel::load_from_file(backend()?, path, &params)
        .map_err(|e| CoreError::ModelLoad { path: path.to_owned(), reason: e.to_string() })
}
