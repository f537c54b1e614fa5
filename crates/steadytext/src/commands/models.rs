//! `steadytext models`: managing the model files in the model directory.

use anyhow::Context;
use steadytext_core::download::{self, DownloadPolicy, FetchOutcome};
use steadytext_core::models::{ImportOutcome, MINILM_L6_V2};
use steadytext_core::registry::{self, ModelChoice, Role, REGISTRY};

use crate::cli::{FetchArgs, ImportArgs, ListArgs};
use crate::download_progress::ProgressDisplay;

/// Runs `steadytext models import`: converts the all-MiniLM-L6-v2 folder into its GGUF file,
/// or reports that the GGUF file is already there.
pub fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let dir = args.model_dir.resolve()?;
    let outcome = dir
        .import(&MINILM_L6_V2)
        .with_context(|| format!("importing {} in {}", MINILM_L6_V2.name, dir.path().display()))?;
    match outcome {
        ImportOutcome::AlreadyPresent(path) => {
            println!("{}: already imported at {}", MINILM_L6_V2.name, path.display())
        }
        ImportOutcome::Converted(path) => {
            println!("{}: imported into {}", MINILM_L6_V2.name, path.display())
        }
    }
    Ok(())
}

/// Runs `steadytext models list`: one tab-separated line per registry model — name, role,
/// set, `present`/`missing`, path — with `*` marking the model that serves its role under the
/// current environment (`STEADYTEXT_*_MODEL`, else the mini set).
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let dir = args.model_dir.resolve()?;
    let mut selected = Vec::new();
    for role in Role::ALL {
        match registry::choose(role)? {
            Some(choice) => selected.push((role, choice)),
            None => println!("# {role}: no model configured ({} unset)", role.env_var()),
        }
    }
    println!("# selected\tname\trole\tset\tstatus\tpath");
    for e in REGISTRY {
        let path = dir.path().join(e.file_name);
        let mark =
            if selected.iter().any(|(_, c)| *c == ModelChoice::Named(e)) { "*" } else { " " };
        let status = if path.exists() { "present" } else { "missing" };
        println!("{mark}\t{}\t{}\t{}\t{status}\t{}", e.name, e.role, e.set, path.display());
    }
    for (role, choice) in &selected {
        if let ModelChoice::File(p) = choice {
            let status = if p.exists() { "present" } else { "missing" };
            println!("*\t{}\t{role}\tfile\t{status}\t{}", choice.display_name(), p.display());
        }
    }
    Ok(())
}

/// Runs `steadytext models fetch`: downloads a registry model if it is missing and downloads
/// are allowed, showing the download's progress on stderr (`--progress`).
pub fn fetch(args: &FetchArgs) -> anyhow::Result<()> {
    let dir = args.model_dir.resolve()?;
    let entry = registry::lookup(&args.name)?;
    let policy = DownloadPolicy { allow: args.allow_download, endpoint: args.hf_endpoint.clone() };
    let mut progress = ProgressDisplay::stderr(entry.name, args.progress);
    let outcome = download::fetch_with_progress(entry, &dir, &policy, &mut progress);
    progress.finish();
    match outcome? {
        FetchOutcome::AlreadyPresent(path) => {
            println!("{}: already present at {}", entry.name, path.display())
        }
        FetchOutcome::Downloaded(d) => println!(
            "{}: downloaded {} bytes into {} ({} request(s), resumed from byte {}, sha256 {})",
            entry.name,
            d.bytes,
            d.path.display(),
            d.requests,
            d.resumed_from,
            if d.verified { "verified" } else { "not pinned in the registry" }
        ),
    }
    Ok(())
}
