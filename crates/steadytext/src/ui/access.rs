//! Who may see the dashboard and change the queue through it.
//!
//! With `--token`, every page asks for it once: the login form checks it and sets a cookie
//! holding a digest of it (never the token itself), `HttpOnly` and `SameSite=Strict`, scoped to
//! `/ui`. Actions are forms posted with a CSRF value that a page of this daemon carries and
//! another site cannot read: random per process, compared in constant time.

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::http::same_secret as same;

/// The cookie's name.
const COOKIE_NAME: &str = "steadytext_ui";

/// The access rules of one daemon.
pub struct Access {
    /// Digest of the token the cookie must hold; `None`: open.
    cookie: Option<String>,
    /// The CSRF value of this process.
    csrf: String,
    /// The raw token, to check a login.
    token: Option<String>,
}

impl Access {
    /// Rules for `token` (none: every page is open), with a fresh CSRF value.
    pub fn new(token: Option<String>) -> Self {
        let cookie = token.as_deref().map(digest);
        let mut seed = [0u8; 32];
        getrandom(&mut seed);
        Self { cookie, csrf: hex::encode(seed), token }
    }

    /// Whether the request may see the pages.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.cookie else { return true };
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == COOKIE_NAME && same(v, expected))
    }

    /// The `Set-Cookie` value for a login with `given`, if it is the token.
    pub fn login(&self, given: &str) -> Option<String> {
        let token = self.token.as_deref()?;
        same(given, token).then(|| {
            format!("{COOKIE_NAME}={}; Path=/ui; HttpOnly; SameSite=Strict", digest(token))
        })
    }

    /// The header that signs out.
    pub fn logout() -> (axum::http::HeaderName, String) {
        (SET_COOKIE, format!("{COOKIE_NAME}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"))
    }

    /// Whether a token is asked for.
    pub fn protected(&self) -> bool {
        self.cookie.is_some()
    }

    /// The CSRF value forms carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether a posted form's CSRF value is this process's.
    pub fn csrf_ok(&self, given: &str) -> bool {
        same(given, &self.csrf)
    }
}

/// Hex SHA-256 of the token, tagged so that it is not the digest of the token elsewhere.
fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(format!("steadytext-ui-cookie\0{token}").as_bytes()))
}

/// Fills `buf` from the operating system's random source.
fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("the operating system's random source (/dev/urandom)");
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn cookie_headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_cookie_from_a_login_opens_the_pages_and_nothing_else_does() {
        let a = Access::new(Some("s3cret".into()));
        assert!(a.protected());
        assert!(a.login("wrong").is_none());
        let set = a.login("s3cret").unwrap();
        let value = set.split(';').next().unwrap();
        assert!(!value.contains("s3cret"), "the cookie holds a digest, not the token");
        assert!(a.allows(&cookie_headers(&format!("other=1; {value}"))));
        assert!(!a.allows(&HeaderMap::new()));
        assert!(!a.allows(&cookie_headers("steadytext_ui=s3cret")));
        assert!(!a.allows(&cookie_headers("steadytext_ui=")));
    }

    #[test]
    fn without_a_token_everything_is_open_and_csrf_still_guards_actions() {
        let a = Access::new(None);
        assert!(!a.protected());
        assert!(a.allows(&HeaderMap::new()));
        assert!(a.login("anything").is_none());
        assert!(a.csrf_ok(a.csrf()));
        assert!(!a.csrf_ok(""));
        assert_ne!(Access::new(None).csrf(), a.csrf(), "random per process");
    }
}
