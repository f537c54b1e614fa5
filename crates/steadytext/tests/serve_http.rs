//! `steadytext serve` over HTTP: the native API the extension uses, the OpenAI-compatible
//! endpoints, errors, authentication, /health, /metrics, and the persistent cache.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use steadytext_api::client::{Client, ClientError};
use steadytext_api::metric_names::{GENERATED_TOKENS, HTTP_REQUESTS, HTTP_REQUEST_DURATION};
use steadytext_api::wire::{
    ConstraintBody, EmbedBody, ErrorCode, GenerateBody, GenerationParams, RerankBody,
    DEFAULT_RERANK_TASK,
};
use support::daemon::Daemon;

/// The output pinned by the engine's golden test (crates/steadytext-core/tests).
const FRANCE: &str = " the capital of the country of France. It is the largest city in France.";

fn client(d: &Daemon) -> Client {
    Client::new(&d.url, Duration::from_secs(5)).unwrap()
}

fn gen(prompt: &str, max_tokens: i32) -> GenerateBody {
    gen_with(prompt, max_tokens, true)
}

fn gen_with(prompt: &str, max_tokens: i32, use_cache: bool) -> GenerateBody {
    let generation = GenerationParams { max_tokens, use_cache, ..GenerationParams::new(prompt) };
    GenerateBody { generation, constraint: None }
}

#[test]
fn native_api_is_deterministic_cached_and_typed() {
    let d = Daemon::serve(&[]);
    let c = client(&d);
    let first = c.generate(&gen("The capital of France is", 16)).unwrap();
    assert_eq!((first.text.as_str(), first.cached, first.tokens), (FRANCE, false, 16));
    let again = c.generate(&gen("The capital of France is", 16)).unwrap();
    assert_eq!((again.text.as_str(), again.cached), (FRANCE, true));
    let fresh = c.generate(&gen_with("The capital of France is", 16, false));
    assert_eq!(fresh.unwrap().text, FRANCE, "a cache bypass recomputes the same bytes");

    // concurrent requests are batched by the engine and still give the alone-result
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let prompt = if i == 0 {
                    "The capital of France is".to_owned()
                } else {
                    format!("Number {i} is")
                };
                c.generate(&gen_with(&prompt, 16, false)).unwrap().text
            })
        })
        .collect();
    let texts: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(texts[0], FRANCE);

    let e = c
        .embed(&EmbedBody {
            texts: vec!["This is an example sentence".into()],
            use_cache: true,
            seed: 42,
        })
        .unwrap();
    let published = [0.0677, 0.0635, 0.0487, 0.0793];
    for (got, want) in e.embeddings[0].iter().zip(published) {
        assert!((got - want).abs() < 1e-3, "{got} vs {want}");
    }

    let r = c
        .rerank(&RerankBody {
            query: "What is the capital of France?".into(),
            documents: vec!["Bananas are yellow.".into(), "Paris is the capital of France.".into()],
            task: DEFAULT_RERANK_TASK.into(),
            seed: 42,
            use_cache: true,
        })
        .unwrap();
    assert_eq!(r.method, "embedding-cosine");
    assert_eq!(r.ranking()[0], 1, "{:?}", r.scores);

    for (body, code, needle) in [
        (gen("x", 0), ErrorCode::InvalidParameter, "max_tokens must be positive, got 0"),
        (gen("x", 5000), ErrorCode::InvalidParameter, "max_tokens must be at most 4096"),
        (gen("", 5), ErrorCode::InvalidParameter, "prompt must not be empty"),
        (gen(&"word ".repeat(5000), 16), ErrorCode::LimitExceeded, "exceeds the context window"),
        // the extension's message for the same schema (steadytext-api's shared check)
        (
            GenerateBody {
                constraint: Some(ConstraintBody::Json { schema: json!({"type": 12}) }),
                ..gen("x", 5)
            },
            ErrorCode::InvalidParameter,
            "schema/type must be a string or an array of strings, got a JSON number",
        ),
    ] {
        match c.generate(&body) {
            Err(ClientError::Daemon { code: got, message }) => {
                assert_eq!(got, code, "{message}");
                assert!(message.contains(needle), "{message}");
            }
            other => panic!("expected a daemon error, got {other:?}"),
        }
    }
}

#[test]
fn openai_endpoints_health_metrics_and_errors() {
    let d = Daemon::serve(&[]);
    let (status, body) = d.request(
        "POST",
        "/v1/completions",
        &[],
        r#"{"prompt":"The capital of France is","max_tokens":16}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], FRANCE);

    let (status, body) = d.request("POST", "/v1/embeddings", &[], r#"{"input":["a","b"]}"#);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 384);

    let (status, body) = d.request("POST", "/v1/rerank", &[],
        &json!({"query": "capital of France", "documents": ["Bananas", "Paris is the capital of France"], "top_n": 1}).to_string());
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["method"], "embedding-cosine");
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["results"][0]["index"], 1);

    let (status, body) = d.request("POST", "/steadytext/v1/generate", &[], r#"{"max_tokens":3}"#);
    assert_eq!(status, 422);
    assert!(body.contains("invalid_parameter") && body.contains("prompt"), "{body}");
    let (status, body) = d.request("GET", "/nowhere", &[], "");
    assert_eq!(status, 404);
    assert!(body.contains("not_found"), "{body}");

    let (status, body) = d.request("GET", "/health", &[], "");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["models"]["generation"]["status"], "loaded");
    assert_eq!(v["models"]["rerank"]["method"], "embedding-cosine");

    let (status, text) = d.request("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(
        text.contains(&format!("{HTTP_REQUESTS}{{endpoint=\"/v1/completions\",status=\"200\"}} 1")),
        "{text}"
    );
    assert!(text.contains(&format!("{GENERATED_TOKENS} 16")), "{text}");
    assert!(text.contains(&format!("# TYPE {HTTP_REQUEST_DURATION} histogram")));
}

#[test]
fn bearer_token_is_required_when_configured() {
    let d = Daemon::serve(&["--token", "s3cret"]);
    let plain = client(&d);
    match plain.embed(&EmbedBody { texts: vec!["x".into()], use_cache: true, seed: 42 }) {
        Err(ClientError::Daemon { code: ErrorCode::Unauthorized, .. }) => {}
        other => panic!("expected unauthorized, got {other:?}"),
    }
    let authed = client(&d).with_token(Some("s3cret".into()));
    assert!(authed
        .embed(&EmbedBody { texts: vec!["x".into()], use_cache: true, seed: 42 })
        .is_ok());
    assert_eq!(d.request("GET", "/health", &[], "").0, 200, "/health stays open");
    assert_eq!(d.request("GET", "/metrics", &["Authorization: Bearer nope"], "").0, 401);
}

/// A body beyond the daemon's limit is refused with 413 and the limit named, on the native and
/// the OpenAI-compatible endpoints alike (not read as malformed JSON).
#[test]
fn a_body_over_the_limit_is_413_naming_the_limit() {
    use std::io::{Read, Write};
    let d = Daemon::serve(&[]);
    let limit = steadytext_api::limits::MAX_BODY_BYTES;
    for path in [steadytext_api::wire::EMBED_PATH, "/v1/embeddings"] {
        let text = "x".repeat(limit + 1);
        let body = format!(r#"{{"texts": ["{text}"], "input": "{text}"}}"#);
        let mut s = std::net::TcpStream::connect(d.url.trim_start_matches("http://")).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        // the daemon may answer and close before reading it all
        let _ = s.write_all(body.as_bytes());
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 413"), "{path}: {}", &reply[..reply.len().min(300)]);
        assert!(reply.contains(&format!("larger than the limit of {limit} bytes")), "{reply}");
    }
}

/// The token can come from a file (its first line), so that it shows neither in the process
/// list nor in the environment; a file without a token stops the daemon at start.
#[test]
fn the_bearer_token_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let d = Daemon::serve(&["--token-file", file.to_str().unwrap()]);
    assert_eq!(d.request("GET", "/metrics", &[], "").0, 401);
    assert_eq!(d.request("GET", "/metrics", &["Authorization: Bearer from-a-fil"], "").0, 401);
    assert_eq!(d.request("GET", "/metrics", &["Authorization: Bearer from-a-file"], "").0, 200);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("from-a-file"));

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let out = support::cli::steadytext(
        None,
        &["serve", "--port", "0", "--token-file", empty.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read the token from") && stderr.contains("empty"), "{stderr}");
}

#[test]
fn the_disk_cache_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache.redb");
    let file = file.to_str().unwrap();
    let body = gen("Once upon a time", 8);
    let first = {
        let mut d = Daemon::serve(&["--cache-file", file]);
        let r = client(&d).generate(&body).unwrap();
        assert!(!r.cached);
        assert!(d.terminate(Duration::from_secs(30)).success(), "clean exit on SIGTERM");
        r.text
    };
    let d = Daemon::serve(&["--cache-file", file]);
    let r = client(&d).generate(&body).unwrap();
    assert!(r.cached, "served from the persistent cache after a restart");
    assert_eq!(r.text, first);
}

#[test]
fn a_unix_socket_serves_the_same_api() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("steadytext.sock");
    let _d = Daemon::serve(&["--socket", socket.to_str().unwrap()]);
    let c = Client::new(&format!("unix:{}", socket.display()), Duration::from_secs(5)).unwrap();
    assert_eq!(c.generate(&gen("The capital of France is", 16)).unwrap().text, FRANCE);
}

#[test]
fn every_serve_and_worker_flag_documents_its_env_var_and_default() {
    for command in ["serve", "worker"] {
        let out = support::cli::steadytext(None, &[command, "--help"], &[]);
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        // each option's text runs from its `--flag` line to the next option
        let mut options: Vec<String> = Vec::new();
        for line in help.lines().skip_while(|l| !l.starts_with("Options:")).skip(1) {
            match options.last_mut() {
                Some(last) if !line.trim_start().starts_with('-') => last.push_str(line),
                _ => options.push(line.trim_start().to_owned()),
            }
        }
        assert!(options.len() > 15, "{help}");
        for option in options {
            if option.starts_with("-h, --help") {
                continue;
            }
            assert!(option.contains("[env: "), "{command}: no env var in {option:?}");
            assert!(option.contains("Default"), "{command}: no default in {option:?}");
        }
    }
}

fn rerank_body(documents: &[&str]) -> RerankBody {
    RerankBody {
        query: "what is a cat?".into(),
        documents: documents.iter().map(|d| d.to_string()).collect(),
        task: DEFAULT_RERANK_TASK.into(),
        seed: 42,
        use_cache: true,
    }
}

#[test]
fn a_configured_reranker_model_scores_and_a_missing_one_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-cross-encoder.gguf");
    steadytext_testkit::tiny_cross_encoder::write(&model, 7).unwrap();
    let d = Daemon::serve_with_env(&[], &[("STEADYTEXT_RERANK_MODEL", model.to_str().unwrap())]);
    let c = client(&d);
    let body = rerank_body(&["a cat is an animal", "the stock market fell", "cats purr"]);
    let first = c.rerank(&body).unwrap();
    assert_eq!(
        (first.method.as_str(), first.model.as_str()),
        ("cross-encoder", "tiny-cross-encoder.gguf")
    );
    assert!(first.scores.iter().all(|s| s.is_finite()) && !first.cached);
    let again = c.rerank(&body).unwrap();
    assert!(again.cached);
    assert_eq!(again.scores, first.scores, "the cache returns the same scores");
    let (_, health) = d.request("GET", "/health", &[], "");
    let v: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(v["models"]["rerank"]["status"], "loaded", "{v}");

    let missing = dir.path().join("absent.gguf");
    let d = Daemon::serve_with_env(&[], &[("STEADYTEXT_RERANK_MODEL", missing.to_str().unwrap())]);
    match client(&d).rerank(&body) {
        Err(ClientError::Daemon { code: ErrorCode::ModelUnavailable, message }) => {
            assert!(message.contains("absent.gguf"), "{message}")
        }
        other => panic!("expected model_unavailable, got {other:?}"),
    }
    // the other roles keep working
    assert_eq!(client(&d).generate(&gen("The capital of France is", 16)).unwrap().text, FRANCE);
}
