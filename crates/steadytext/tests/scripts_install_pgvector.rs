//! A clone on its own installs pgvector: the source tarball `scripts/install-pgvector` builds is
//! in the repository (tracked, so present in every clone), with the checksum the script checks.

use sha2::{Digest, Sha256};

/// The value of `name=` in the script (its first assignment).
fn assignment<'a>(script: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}=");
    script
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name}= in scripts/install-pgvector"))
}

#[test]
fn the_pgvector_tarball_is_in_the_repository_with_the_checksum_the_script_checks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = std::fs::read_to_string(root.join("scripts/install-pgvector")).unwrap();
    let version = assignment(&script, "version");
    let sha256 = assignment(&script, "sha256");
    let tarball = root.join(format!("third_party/pgvector/pgvector-{version}.tar.gz"));
    let bytes = std::fs::read(&tarball)
        .unwrap_or_else(|e| panic!("{} missing from the repository: {e}", tarball.display()));
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256, "{}", tarball.display());
    assert!(
        root.join("third_party/pgvector/LICENSE").is_file(),
        "pgvector's licence travels with it"
    );
}
