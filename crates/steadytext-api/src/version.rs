//! Version identifiers shared by every component.

/// The version of the pg_steadytext project (all crates share it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of the daemon's HTTP API; bumped on incompatible changes.
pub const API_VERSION: u32 = 1;

/// Returns the project version and the API version as one string, e.g. `0.1.0 (api 1)`.
pub fn api_version() -> String {
    format!("{VERSION} (api {API_VERSION})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_names_both_versions() {
        let v = api_version();
        assert!(v.starts_with(VERSION), "{v}");
        assert!(v.ends_with(&format!("(api {API_VERSION})")), "{v}");
        let parts: Vec<&str> = VERSION.split('.').collect();
        assert_eq!(parts.len(), 3, "semver expected, got {VERSION}");
        assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()));
    }
}
