//! The `steadytext` binary of this crate run as a command line, the one way the CLI tests run it.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `steadytext args…` to completion with `model_dir` as its model directory (the default
/// one when `None`) and `env` set, after removing the environment variables that would choose
/// other models or allow downloads, so that the caller's environment never changes a result.
pub fn steadytext(model_dir: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steadytext"));
    cmd.args(args)
        .env_remove("STEADYTEXT_GENERATION_MODEL")
        .env_remove("STEADYTEXT_EMBEDDING_MODEL")
        .env_remove("STEADYTEXT_RERANK_MODEL")
        .env_remove("STEADYTEXT_ALLOW_DOWNLOAD")
        .env_remove("STEADYTEXT_HF_ENDPOINT");
    if let Some(dir) = model_dir {
        cmd.env("STEADYTEXT_MODEL_DIR", dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("steadytext runs")
}
