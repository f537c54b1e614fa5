//! Where the model files live, by one rule for the daemon, the tests and the benchmarks
//! (`scripts/lib/common.sh` spells the same rule in shell): `STEADYTEXT_MODEL_DIR` when set and
//! not empty, else `~/.cache/steadytext/models`, else (no `HOME`) an error naming both.

use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable that names the model directory.
pub const ENV: &str = "STEADYTEXT_MODEL_DIR";

/// The default model directory, relative to the home directory.
pub const UNDER_HOME: &str = ".cache/steadytext/models";

/// Neither `STEADYTEXT_MODEL_DIR` nor `HOME` is set (or both are empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no model directory: set STEADYTEXT_MODEL_DIR (or HOME, for ~/{UNDER_HOME})")]
pub struct NoModelDir;

/// The model directory from this process's environment.
pub fn resolve() -> Result<PathBuf, NoModelDir> {
    resolve_from(std::env::var_os(ENV), std::env::var_os("HOME"))
}

/// The rule of [`resolve`], with the two variables passed in.
pub fn resolve_from(
    model_dir: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, NoModelDir> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    match (set(model_dir), set(home)) {
        (Some(dir), _) => Ok(dir),
        (None, Some(home)) => Ok(home.join(UNDER_HOME)),
        (None, None) => Err(NoModelDir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_wins_then_home_then_an_error() {
        let dir =
            |m: Option<&str>, h: Option<&str>| resolve_from(m.map(Into::into), h.map(Into::into));
        assert_eq!(dir(Some("/models"), Some("/home/u")), Ok(PathBuf::from("/models")));
        assert_eq!(
            dir(Some(""), Some("/home/u")),
            Ok(PathBuf::from("/home/u/.cache/steadytext/models"))
        );
        assert_eq!(
            dir(None, Some("/home/u")),
            Ok(PathBuf::from("/home/u/.cache/steadytext/models"))
        );
        assert_eq!(dir(Some("/models"), None), Ok(PathBuf::from("/models")));
        assert_eq!(dir(None, None), Err(NoModelDir));
        assert_eq!(dir(Some(""), Some("")), Err(NoModelDir));
        assert_eq!(
            NoModelDir.to_string(),
            "no model directory: set STEADYTEXT_MODEL_DIR (or HOME, for ~/.cache/steadytext/models)"
        );
    }
}
