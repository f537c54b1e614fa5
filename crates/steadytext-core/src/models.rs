//! Model registry and resolution of model files on disk.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::CoreError;

/// A model file the project knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name used on the command line and in the registry.
    pub name: &'static str,
    /// File (or folder) name inside the model directory.
    pub file_name: &'static str,
    /// Expected sha256 of the file (of `model.safetensors` for a folder).
    pub sha256: &'static str,
}

/// The packaged offline generation model: Gemma 3 270M base, Q4_K_M (DESIGN.md §2).
pub const GEMMA3_270M: ModelSpec = ModelSpec {
    name: "gemma-3-270m",
    file_name: "gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
};

/// Directory holding the model files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir(PathBuf);

impl ModelDir {
    /// Environment variable overriding the model directory.
    pub const ENV: &'static str = "STEADYTEXT_MODEL_DIR";

    /// Uses the given directory.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// Resolves the directory: `$STEADYTEXT_MODEL_DIR`, else `$HOME/.cache/steadytext/models`.
    pub fn resolve() -> Self {
        Self::from_env(std::env::var_os(Self::ENV), std::env::var_os("HOME"))
    }

    /// The resolution rule of [`ModelDir::resolve`], with the environment passed in.
    pub fn from_env(
        model_dir: Option<std::ffi::OsString>,
        home: Option<std::ffi::OsString>,
    ) -> Self {
        match model_dir.filter(|v| !v.is_empty()) {
            Some(dir) => Self(PathBuf::from(dir)),
            None => {
                let home = home.map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
                Self(home.join(".cache/steadytext/models"))
            }
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Path of a model inside the directory, failing if it does not exist.
    pub fn locate(&self, spec: &ModelSpec) -> Result<PathBuf, CoreError> {
        let path = self.0.join(spec.file_name);
        if path.exists() {
            Ok(path)
        } else {
            Err(CoreError::ModelMissing { path })
        }
    }
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_override_wins_over_home() {
        let d = ModelDir::from_env(Some("/models".into()), Some("/home/u".into()));
        assert_eq!(d.path(), Path::new("/models"));
        let d = ModelDir::from_env(Some("".into()), Some("/home/u".into()));
        assert_eq!(d.path(), Path::new("/home/u/.cache/steadytext/models"));
        let d = ModelDir::from_env(None, Some("/home/u".into()));
        assert_eq!(d.path(), Path::new("/home/u/.cache/steadytext/models"));
    }

    #[test]
    fn locate_reports_the_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let md = ModelDir::new(dir.path());
        let err = md.locate(&GEMMA3_270M).unwrap_err();
        assert!(err.to_string().contains("gemma-3-270m-q4_k_m.gguf"), "{err}");
        std::fs::write(dir.path().join(GEMMA3_270M.file_name), b"x").unwrap();
        assert_eq!(md.locate(&GEMMA3_270M).unwrap(), dir.path().join(GEMMA3_270M.file_name));
    }

    #[test]
    fn sha256_of_known_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
