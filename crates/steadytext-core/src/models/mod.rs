//! Model files: the registry of packaged models, their resolution on disk, downloads, GGUF
//! reading and the BERT-to-GGUF importer.

pub mod bert_gguf;
pub mod download;
pub mod gguf;
pub mod registry;

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

/// The packaged offline generation model: Gemma 3 270M base, Q4_K_M (wheels on PyPI, put in
/// place by scripts/fetch-models).
pub const GEMMA3_270M: ModelSpec = ModelSpec {
    name: "gemma-3-270m",
    file_name: "gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
};

/// A model packaged as a sentence-transformers folder that `steadytext models import` converts
/// into a GGUF file next to it, so that llama.cpp serves it like every other model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportedModelSpec {
    /// Short name used on the command line and in the registry.
    pub name: &'static str,
    /// Folder name inside the model directory (as unpacked by scripts/setup).
    pub folder: &'static str,
    /// Expected sha256 of the folder's `model.safetensors`.
    pub sha256: &'static str,
    /// Name of the GGUF file the import writes into the model directory.
    pub gguf_file_name: &'static str,
}

/// The packaged offline embedding model: all-MiniLM-L6-v2, 384-d, mean pooling (a wheel on
/// PyPI, put in place by scripts/fetch-models).
pub const MINILM_L6_V2: ImportedModelSpec = ImportedModelSpec {
    name: "all-minilm-l6-v2",
    folder: "all-MiniLM-L6-v2",
    sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    gguf_file_name: "all-MiniLM-L6-v2-f32.gguf",
};

/// What [`ModelDir::import`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The GGUF file already existed; nothing was done.
    AlreadyPresent(PathBuf),
    /// The folder was verified and converted into this GGUF file.
    Converted(PathBuf),
}

impl ImportOutcome {
    /// The GGUF file in either case.
    pub fn path(&self) -> &Path {
        match self {
            ImportOutcome::AlreadyPresent(p) | ImportOutcome::Converted(p) => p,
        }
    }
}

/// Directory holding the model files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir(PathBuf);

impl ModelDir {
    /// Environment variable overriding the model directory.
    pub const ENV: &'static str = steadytext_api::model_dir::ENV;

    /// Uses the given directory.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// Resolves the directory by the rule of [`steadytext_api::model_dir`]:
    /// `$STEADYTEXT_MODEL_DIR`, else `$HOME/.cache/steadytext/models`, else
    /// [`CoreError::NoModelDir`].
    pub fn resolve() -> Result<Self, CoreError> {
        Ok(Self(steadytext_api::model_dir::resolve()?))
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Path of a model inside the directory, failing if it does not exist.
    pub fn locate(&self, spec: &ModelSpec) -> Result<PathBuf, CoreError> {
        existing(self.0.join(spec.file_name))
    }
}

impl ModelDir {
    /// Path of the imported GGUF of `spec`, failing if it has not been imported.
    pub fn locate_imported(&self, spec: &ImportedModelSpec) -> Result<PathBuf, CoreError> {
        existing(self.0.join(spec.gguf_file_name))
    }

    /// Whether the source folder of `spec` is present (its `model.safetensors` exists).
    pub fn has_source(&self, spec: &ImportedModelSpec) -> bool {
        self.0.join(spec.folder).join("model.safetensors").exists()
    }

    /// The imported GGUF of `spec`, converting it from its packaged folder first when only the
    /// folder is present: the one place a packaged model is imported on first use. The flag
    /// says whether this call converted it.
    pub fn locate_or_import(&self, spec: &ImportedModelSpec) -> Result<(PathBuf, bool), CoreError> {
        match self.locate_imported(spec) {
            Ok(path) => Ok((path, false)),
            Err(_) if self.has_source(spec) => Ok((self.import(spec)?.path().to_owned(), true)),
            Err(missing) => Err(missing),
        }
    }

    /// Converts the folder of `spec` into its GGUF file after checking the safetensors sha256.
    /// Idempotent: an existing GGUF file is left alone.
    pub fn import(&self, spec: &ImportedModelSpec) -> Result<ImportOutcome, CoreError> {
        let out = self.0.join(spec.gguf_file_name);
        if out.exists() {
            return Ok(ImportOutcome::AlreadyPresent(out));
        }
        let folder = self.0.join(spec.folder);
        let weights = folder.join("model.safetensors");
        if !weights.exists() {
            return Err(CoreError::ModelMissing { path: weights });
        }
        let actual = sha256_file(&weights)
            .map_err(|source| CoreError::Io { path: weights.clone(), source })?;
        if actual != spec.sha256 {
            return Err(CoreError::Checksum {
                path: weights,
                actual,
                expected: spec.sha256.into(),
            });
        }
        crate::bert_gguf::convert(&folder, &out)?;
        Ok(ImportOutcome::Converted(out))
    }
}

/// `path` if it exists, else [`CoreError::ModelMissing`] naming it.
fn existing(path: PathBuf) -> Result<PathBuf, CoreError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(CoreError::ModelMissing { path })
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
    fn locate_reports_the_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let md = ModelDir::new(dir.path());
        let err = md.locate(&GEMMA3_270M).unwrap_err();
        assert!(err.to_string().contains("gemma-3-270m-q4_k_m.gguf"), "{err}");
        std::fs::write(dir.path().join(GEMMA3_270M.file_name), b"x").unwrap();
        assert_eq!(md.locate(&GEMMA3_270M).unwrap(), dir.path().join(GEMMA3_270M.file_name));
    }

    #[test]
    fn import_checks_the_sha256_and_reports_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        let md = ModelDir::new(dir.path());
        let err = md.import(&MINILM_L6_V2).unwrap_err();
        assert!(
            matches!(err, CoreError::ModelMissing { .. })
                && err.to_string().contains("scripts/setup"),
            "{err}"
        );
        assert!(!md.has_source(&MINILM_L6_V2));
        let folder = dir.path().join(MINILM_L6_V2.folder);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("model.safetensors"), b"not the model").unwrap();
        let err = md.import(&MINILM_L6_V2).unwrap_err();
        assert!(matches!(err, CoreError::Checksum { .. }), "{err}");
        assert!(md.locate_imported(&MINILM_L6_V2).is_err());
        std::fs::write(dir.path().join(MINILM_L6_V2.gguf_file_name), b"x").unwrap();
        let done = md.import(&MINILM_L6_V2).unwrap();
        assert_eq!(
            done,
            ImportOutcome::AlreadyPresent(dir.path().join(MINILM_L6_V2.gguf_file_name))
        );
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
