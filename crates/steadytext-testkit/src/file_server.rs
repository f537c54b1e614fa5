//! A local HTTP server of fixed files for the download tests: ranges, a connection cut after a
//! given number of bytes, and a log of the requests (one implementation; there were two).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The requested path.
    pub path: String,
    /// Its `Range` header, if any.
    pub range: Option<String>,
}

/// A file the server serves; `cut_after` makes the first response send only that many body
/// bytes (announcing the full length) and close the connection.
pub struct Served {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Bytes of the body sent by the first response before the connection is closed.
    pub cut_after: Option<usize>,
}

impl Served {
    /// `bytes`, served whole every time.
    pub fn whole(bytes: Vec<u8>) -> Self {
        Self { bytes, cut_after: None }
    }
}

/// A local HTTP/1.1 server of fixed files, on a free port until the test process ends; 404 for
/// any other path.
pub struct Server {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Starts serving `files` (path → file).
    pub fn start(files: HashMap<String, Served>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let files = Arc::new(Mutex::new(files));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                serve(stream, &files, &log);
            }
        });
        Server { base, seen }
    }

    /// The requests received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers one connection: the file at the request's path (from the `Range` header's offset, if
/// any), or 404.
fn serve(mut stream: TcpStream, files: &Mutex<HashMap<String, Served>>, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push(Seen { path: path.clone(), range: range.clone() });
    let mut files = files.lock().unwrap();
    let Some(file) = files.get_mut(&path) else {
        let _ = stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        );
        return;
    };
    let total = file.bytes.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .map(|s| s.parse::<usize>().unwrap())
        .unwrap_or(0);
    let head = if range.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\nConnection: close\r\n\r\n",
            total - start,
            total - 1
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n")
    };
    let body = &file.bytes[start..];
    let body = match file.cut_after.take() {
        Some(n) => &body[..n],
        None => body,
    };
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}
