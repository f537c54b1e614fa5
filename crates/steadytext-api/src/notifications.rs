//! The queue's notification channels and the completion notice, as the extension sends them and
//! workers, tests and benchmarks read them.

use serde::{Deserialize, Serialize};

/// Channel of `NOTIFY steadytext_jobs`: new requests were enqueued (sent at their commit; no
/// payload). Workers LISTEN on it; any role can send it, which only makes workers look early.
pub const JOBS_CHANNEL: &str = "steadytext_jobs";

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
