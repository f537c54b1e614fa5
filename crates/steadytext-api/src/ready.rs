//! What a daemon's ready file (`--ready-file`) says once it can be reached: written by the
//! daemon, read by the test kit, the benchmarks and `scripts/lib/common.sh` (its `url` field).

use serde::{Deserialize, Serialize};

/// The content of a ready file: one flat JSON object, written whole (through a rename).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// `http://ADDR:PORT` of the HTTP API (`None` for `steadytext worker`).
    pub url: Option<String>,
    /// `unix:PATH` of the Unix socket, when one was asked for.
    pub socket: Option<String>,
    /// The worker's id, when a worker runs.
    pub worker: Option<String>,
    /// The daemon's process id.
    pub pid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file is one flat object whose string fields `scripts/lib/common.sh` can cut out.
    #[test]
    fn a_ready_file_is_one_flat_object() {
        let ready = Ready {
            url: Some("http://127.0.0.1:8765".into()),
            socket: None,
            worker: Some("w".into()),
            pid: 7,
        };
        let text = serde_json::to_string(&ready).unwrap();
        assert_eq!(text, r#"{"url":"http://127.0.0.1:8765","socket":null,"worker":"w","pid":7}"#);
        assert_eq!(serde_json::from_str::<Ready>(&text).unwrap(), ready);
    }
}
