//! The queue's notification channels and the completion notice, as the extension sends them and
//! workers, tests and benchmarks read them.

use serde::{Deserialize, Serialize};

/// Channel of `NOTIFY steadytext_jobs`: new requests were enqueued (sent at their commit, with an
/// [`Announcement`] as payload; `walk` when a derivation starts walking its source). Workers
/// LISTEN on it; any role can send it, which only makes workers look early.
pub const JOBS_CHANNEL: &str = "steadytext_jobs";

/// The payload of a `NOTIFY steadytext_jobs` that announces new requests: `<token>:<requests>`,
/// where the token differs between the announcements of one backend (a counter) and `requests`
/// is how many the statement enqueued. Every worker receives every announcement; the token with
/// the sending backend's pid (which every notification carries) picks which of them claim at
/// once, and the count how many (see the worker's `wake.rs`), so that one new request does not
/// wake a dozen workers into empty claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Differs between the announcements of one backend; the same for every worker that
    /// receives one.
    pub token: String,
    /// Requests announced.
    pub requests: u64,
}

impl Announcement {
    /// The payload text.
    pub fn payload(&self) -> String {
        format!("{}:{}", self.token, self.requests)
    }

    /// The announcement in `payload`, or `None` if it is not one (an empty payload, as
    /// pg_steadytext 0.1.0 sends: every worker should look).
    pub fn parse(payload: &str) -> Option<Self> {
        let (token, requests) = payload.rsplit_once(':')?;
        let requests = requests.parse().ok()?;
        (!token.is_empty()).then(|| Self { token: token.to_owned(), requests })
    }
}

/// Channel of the completion notice ([`Completion`]), sent when a request is completed, failed
/// for good or cancelled. Any role can send on it: a notice is a hint to look at the row, never
/// proof of what happened.
pub const COMPLETED_CHANNEL: &str = "steadytext_completed";

/// How a request ended, as a completion notice says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Its result was stored.
    Completed,
    /// It failed for good.
    Failed,
    /// It was cancelled.
    Cancelled,
}

/// The JSON payload of a notice on [`COMPLETED_CHANNEL`]: `{"request_id", "function",
/// "status"}` (never the result: payloads are capped at 8000 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The request's uuid, in its text form.
    pub request_id: String,
    /// Its function (`generate`, `embed`, …).
    pub function: String,
    /// How it ended.
    pub status: Outcome,
}

impl Completion {
    /// The notice in `payload`, or `None` if it is not one.
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the extension sends reads back; an empty or foreign payload is not an announcement.
    #[test]
    fn announcements_read_back() {
        let a = Announcement { token: "4242.7".into(), requests: 3 };
        assert_eq!(a.payload(), "4242.7:3");
        assert_eq!(Announcement::parse(&a.payload()), Some(a));
        // the SQL of derivations builds it with format('%s:%s', …)
        assert_eq!(
            Announcement::parse("0.1234:1000"),
            Some(Announcement { token: "0.1234".into(), requests: 1000 })
        );
        for other in ["", "walk", ":3", "x:", "x:-1", "x:many"] {
            assert_eq!(Announcement::parse(other), None, "{other:?}");
        }
    }

    /// The payload the SQL helper `steadytext_queue_notify_completed` builds with
    /// `json_build_object` reads back; anything else is not a notice.
    #[test]
    fn notices_read_back() {
        let id = "0b7e4d1c-8f4e-4c55-9a43-3c1f8d2e6a10";
        let payload = format!(
            r#"{{"request_id" : "{id}", "function" : "generate", "status" : "cancelled"}}"#
        );
        let notice = Completion::parse(&payload).unwrap();
        assert_eq!(notice.request_id, id);
        assert_eq!(notice.function, "generate");
        assert_eq!(notice.status, Outcome::Cancelled);
        assert_eq!(Completion::parse(r#"{"request_id": "x", "status": "done"}"#), None);
        assert_eq!(Completion::parse("not json"), None);
    }
}
