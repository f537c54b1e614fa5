//! A small blocking client of the daemon's native API, used by the extension's synchronous
//! SQL functions. Plain HTTP/1.1 over TCP (`http://host:port`) or a Unix socket
//! (`unix:/path/to/socket`), one connection per call, no dependencies beyond std and serde.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::{self, ErrorCode, ErrorReply};

/// Why a call to the daemon did not produce a reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon URL does not parse.
    #[error("invalid steadytext.daemon_url {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nothing accepted the connection (within the connect timeout).
    #[error("steadytext daemon at {url} is unreachable ({reason}); start it with `steadytext serve` or set steadytext.daemon_url")]
    Unreachable {
        /// The daemon URL.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// The connection broke or the reply is not HTTP/JSON as expected.
    #[error("steadytext daemon at {url} sent an invalid reply: {reason}")]
    Protocol {
        /// The daemon URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The daemon answered with an error.
    #[error("{message}")]
    Daemon {
        /// The error class.
        code: ErrorCode,
        /// The daemon's message.
        message: String,
    },
}

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Tcp { authority: String },
    Unix { path: String },
}

/// A configured daemon client (cheap to create; no connection is kept).
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    endpoint: Endpoint,
    connect_timeout: Duration,
    token: Option<String>,
}

impl Client {
    /// A client of the daemon at `url` (`http://host:port` or `unix:/path`), giving up on a
    /// connection attempt after `connect_timeout`.
    pub fn new(url: &str, connect_timeout: Duration) -> Result<Self, ClientError> {
        let bad = |reason| ClientError::BadUrl { url: url.to_owned(), reason };
        let endpoint = if let Some(rest) = url.strip_prefix("http://") {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(bad("expected http://host:port"));
            }
            Endpoint::Tcp { authority: authority.to_owned() }
        } else if let Some(path) = url.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(bad("expected unix:/absolute/path"));
            }
            Endpoint::Unix { path: path.to_owned() }
        } else {
            return Err(bad("expected http://host:port or unix:/path"));
        };
        Ok(Self { url: url.to_owned(), endpoint, connect_timeout, token: None })
    }

    /// Sends `Authorization: Bearer <token>` with every call.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// `POST /steadytext/v1/generate`.
    pub fn generate(&self, body: &wire::GenerateBody) -> Result<wire::GenerateReply, ClientError> {
        self.post(wire::GENERATE_PATH, body)
    }

    /// `POST /steadytext/v1/embed`.
    pub fn embed(&self, body: &wire::EmbedBody) -> Result<wire::EmbedReply, ClientError> {
        self.post(wire::EMBED_PATH, body)
    }

    /// `POST /steadytext/v1/rerank`.
    pub fn rerank(&self, body: &wire::RerankBody) -> Result<wire::RerankReply, ClientError> {
        self.post(wire::RERANK_PATH, body)
    }

    /// Posts `body` as JSON to `path` and decodes the JSON reply (or the error reply).
    pub fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let payload = serde_json::to_vec(body).map_err(|e| self.protocol(e))?;
        let (status, reply) = self.exchange("POST", path, &payload)?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&reply).map_err(|e| self.protocol(e));
        }
        match serde_json::from_slice::<ErrorReply>(&reply) {
            Ok(e) => Err(ClientError::Daemon { code: e.error.code, message: e.error.message }),
            Err(_) => Err(self.protocol(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&reply).chars().take(200).collect::<String>()
            ))),
        }
    }

    fn protocol(&self, reason: impl ToString) -> ClientError {
        ClientError::Protocol { url: self.url.clone(), reason: reason.to_string() }
    }

    fn unreachable(&self, reason: impl ToString) -> ClientError {
        ClientError::Unreachable { url: self.url.clone(), reason: reason.to_string() }
    }

    /// One HTTP/1.1 request with `Connection: close`; returns the status and the body.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        payload: &[u8],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let (mut stream, host): (Box<dyn ReadWrite>, &str) = match &self.endpoint {
            Endpoint::Tcp { authority } => {
                let addrs: Vec<_> = authority
                    .to_socket_addrs()
                    .map_err(|e| self.unreachable(format!("cannot resolve {authority}: {e}")))?
                    .collect();
                let mut last = None;
                let mut stream = None;
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                        Ok(s) => {
                            stream = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let stream = stream.ok_or_else(|| {
                    self.unreachable(last.map_or("no address".to_owned(), |e| e.to_string()))
                })?;
                let _ = stream.set_nodelay(true);
                (Box::new(stream), authority.as_str())
            }
            Endpoint::Unix { path } => {
                let stream = UnixStream::connect(path).map_err(|e| self.unreachable(e))?;
                (Box::new(stream), "localhost")
            }
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            payload.len()
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .and_then(|_| stream.write_all(payload))
            .and_then(|_| stream.flush())
            .map_err(|e| self.protocol(format!("sending the request: {e}")))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|e| self.protocol(format!("reading the reply: {e}")))?;
        parse_response(&raw).map_err(|e| self.protocol(e))
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Splits a complete HTTP/1.1 response into its status and (de-chunked) body.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete HTTP header in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "header is not UTF-8")?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok((status, body))
}

/// Decodes a chunked transfer-encoded body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&body[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls() {
        assert!(Client::new("http://127.0.0.1:8765", Duration::from_secs(1)).is_ok());
        assert!(Client::new("unix:/run/steadytext.sock", Duration::from_secs(1)).is_ok());
        for bad in ["127.0.0.1:8765", "https://x:1", "http://", "http://x:1/path", "unix:rel"] {
            assert!(
                matches!(Client::new(bad, Duration::from_secs(1)), Err(ClientError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 422 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (422, b"abcde".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }

    #[test]
    fn unreachable_names_the_address_and_the_command() {
        // a port that was free a moment ago: bind, note it, drop
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let c = Client::new(&url, Duration::from_millis(500)).unwrap();
        let body = wire::EmbedBody { texts: vec!["x".into()], use_cache: true, seed: 42 };
        let msg = c.embed(&body).unwrap_err().to_string();
        assert!(msg.contains(&url) && msg.contains("steadytext serve"), "{msg}");
    }

    #[test]
    fn daemon_errors_are_decoded() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // the whole request, headers and body: closing a socket with unread bytes resets
            // the connection, and the client may then lose the reply (it did, once in CI)
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let complete = |r: &[u8]| {
                let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return false;
                };
                let head = String::from_utf8_lossy(&r[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                r.len() >= end + 4 + length
            };
            while !complete(&request) {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed before sending its whole request");
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"error":{"code":"invalid_regex","message":"bad pattern"}}"#;
            write!(s, "HTTP/1.1 422 X\r\ncontent-length: {}\r\n\r\n{body}", body.len()).unwrap();
        });
        let c = Client::new(&url, Duration::from_secs(2)).unwrap();
        let body = wire::EmbedBody { texts: vec!["x".into()], use_cache: true, seed: 42 };
        match c.embed(&body) {
            Err(ClientError::Daemon { code: ErrorCode::InvalidRegex, message }) => {
                assert_eq!(message, "bad pattern")
            }
            other => panic!("{other:?}"),
        }
        server.join().unwrap();
    }
}
