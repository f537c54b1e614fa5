//! `steadytext serve`'s OpenAI-compatible API driven by an independent client library (the
//! `async-openai` crate): models, completions and chat completions, whole and streamed, with
//! `usage`; the refusals; and a streamed request whose client goes away stopping its
//! generation.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, ChatCompletionStreamOptions, CreateChatCompletionRequestArgs,
};
use async_openai::types::completions::CreateCompletionRequestArgs;
use async_openai::Client;
use futures_util::StreamExt;
use serde_json::{json, Value};
use steadytext_api::metric_names::{ENGINE_ABANDONED, GENERATED_TOKENS};
use support::daemon::{wait_until, Daemon};

/// The output pinned by the engine's golden test (crates/steadytext-core/tests).
const FRANCE: &str = " the capital of the country of France. It is the largest city in France.";

fn openai(d: &Daemon) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new().with_api_base(format!("{}/v1", d.url)).with_api_key("unused"),
    )
}

fn stream_options() -> ChatCompletionStreamOptions {
    ChatCompletionStreamOptions { include_usage: Some(true), include_obfuscation: None }
}

fn conversation() -> Vec<ChatCompletionRequestMessage> {
    vec![
        ChatCompletionRequestSystemMessage::from("Answer in one short sentence.").into(),
        ChatCompletionRequestUserMessage::from("What is the capital of France?").into(),
    ]
}

/// The status and message of an API error.
fn api_error(e: OpenAIError) -> (u16, String) {
    match e {
        OpenAIError::ApiError(r) => (r.status_code.as_u16(), r.api_error.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_openai_client_lists_models_and_completes_whole_and_streamed() {
    let d = Daemon::serve(&[]);
    let client = openai(&d);
    let health: Value = serde_json::from_str(&d.get("/health").unwrap()).unwrap();

    let models = client.models().list().await.unwrap();
    assert_eq!(models.object, "list");
    let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
    for role in ["generation", "embedding"] {
        let name = health["models"][role]["name"].as_str().unwrap();
        assert!(ids.contains(&name), "{role} model {name} not in {ids:?}");
    }
    assert!(models.data.iter().all(|m| m.object == "model" && m.created > 0), "{models:?}");

    // a whole completion, with usage
    let request = |prompt: &str| {
        CreateCompletionRequestArgs::default()
            .model("gemma")
            .prompt(prompt)
            .max_tokens(16u32)
            .build()
            .unwrap()
    };
    let whole = client.completions().create(request("The capital of France is")).await.unwrap();
    assert_eq!(whole.choices[0].text, FRANCE);
    let usage = whole.usage.clone().unwrap();
    assert_eq!(usage.completion_tokens, 16);
    assert!(usage.prompt_tokens >= 6, "{usage:?}");
    assert_eq!(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    let cached = client.completions().create(request("The capital of France is")).await.unwrap();
    assert_eq!(cached.choices[0].text, FRANCE);
    assert_eq!(cached.usage.unwrap().prompt_tokens, usage.prompt_tokens, "cache hits count too");

    // streamed (a prompt not generated before, so it is decoded now): several chunks whose
    // text is the unstreamed text, the finish reason, then the usage chunk
    let prompt = "Once upon a time, in a small village,";
    let mut streamed = CreateCompletionRequestArgs::default();
    streamed.prompt(prompt).max_tokens(24u32).stream_options(stream_options());
    let mut events = client.completions().create_stream(streamed.build().unwrap()).await.unwrap();
    let (mut text, mut pieces, mut finish, mut streamed_usage) = (String::new(), 0, None, None);
    while let Some(chunk) = events.next().await {
        let chunk = chunk.unwrap();
        assert_eq!(chunk.object, "text_completion");
        if let Some(choice) = chunk.choices.first() {
            if !choice.text.is_empty() {
                pieces += 1;
            }
            text.push_str(&choice.text);
            finish = choice.finish_reason.or(finish);
        }
        streamed_usage = chunk.usage.or(streamed_usage);
    }
    assert!(pieces > 1, "decoded token by token, got {pieces} piece(s)");
    let fresh = {
        let body = json!({"prompt": prompt, "max_tokens": 24, "use_cache": false});
        let (status, reply) = d.request("POST", "/steadytext/v1/generate", &[], &body.to_string());
        assert_eq!(status, 200, "{reply}");
        serde_json::from_str::<Value>(&reply).unwrap()["text"].as_str().unwrap().to_owned()
    };
    assert_eq!(text, fresh, "streamed text equals a fresh unstreamed generation");
    let whole = client.completions().create(request_with(prompt, 24)).await.unwrap();
    assert_eq!(whole.choices[0].text, text);
    let streamed_usage = streamed_usage.expect("include_usage sends usage");
    assert_eq!(streamed_usage, whole.usage.unwrap());
    assert!(finish.is_some(), "a final chunk with a finish_reason");
}

fn request_with(
    prompt: &str,
    max_tokens: u32,
) -> async_openai::types::completions::CreateCompletionRequest {
    CreateCompletionRequestArgs::default().prompt(prompt).max_tokens(max_tokens).build().unwrap()
}

#[tokio::test]
async fn chat_completions_use_the_chat_template_whole_and_streamed_alike() {
    let d = Daemon::serve(&[]);
    let client = openai(&d);
    let request = |stream: bool| {
        let mut r = CreateChatCompletionRequestArgs::default();
        r.model("gemma").messages(conversation()).max_completion_tokens(20u32).seed(7);
        if stream {
            r.stream_options(stream_options());
        }
        r.build().unwrap()
    };

    // streamed first, so that it is decoded now, token by token
    let mut events = client.chat().create_stream(request(true)).await.unwrap();
    let (mut text, mut pieces, mut role, mut usage) = (String::new(), 0, None, None);
    while let Some(chunk) = events.next().await {
        let chunk = chunk.unwrap();
        assert_eq!(chunk.object, "chat.completion.chunk");
        if let Some(choice) = chunk.choices.first() {
            role = choice.delta.role.or(role);
            if let Some(content) = choice.delta.content.as_deref().filter(|c| !c.is_empty()) {
                pieces += 1;
                text.push_str(content);
            }
        }
        usage = chunk.usage.or(usage);
    }
    assert!(role.is_some(), "the first chunk names the assistant's role");
    assert!(pieces > 1, "decoded token by token, got {pieces} piece(s)");
    assert!(!text.is_empty());

    let whole = client.chat().create(request(false)).await.unwrap();
    assert_eq!(whole.object, "chat.completion");
    assert_eq!(whole.choices[0].message.content.as_deref(), Some(text.as_str()));
    let whole_usage = whole.usage.unwrap();
    assert_eq!(Some(whole_usage.clone()), usage, "the streamed usage is the whole one's");
    // the template's turn markers are single control tokens, so the prompt is short
    assert!(
        (15..40).contains(&whole_usage.prompt_tokens),
        "prompt tokens of the templated conversation: {}",
        whole_usage.prompt_tokens
    );

    // a conversation differs from its text completed as a plain prompt
    let plain = client
        .completions()
        .create(request_with("What is the capital of France?", 20))
        .await
        .unwrap();
    assert_ne!(plain.choices[0].text, text);

    readme_example_answers_as_shown(&d);
}

/// The README's chat request (section "OpenAI-compatible API") gets the content and usage the
/// README shows.
fn readme_example_answers_as_shown(d: &Daemon) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("## OpenAI-compatible API").nth(1).unwrap();
    let (command, rest) =
        section.split_once("```sh\n").and_then(|(_, r)| r.split_once("```")).expect("a sh block");
    let path = command
        .split("http://127.0.0.1:8765")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a URL");
    let body = command.split("-d '").nth(1).and_then(|r| r.split('\'').next()).expect("-d '…'");
    let shown: Vec<Value> = rest
        .split_once("```text\n")
        .and_then(|(_, r)| r.split_once("```"))
        .expect("a text block")
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (status, reply) = d.request("POST", path, &[], body);
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    let got = vec![reply["choices"][0]["message"]["content"].clone(), reply["usage"].clone()];
    assert_eq!(got, shown, "the README's example answer");
}

#[tokio::test]
async fn unsupported_fields_get_a_400_naming_them_and_a_json_schema_constrains_the_reply() {
    let d = Daemon::serve(&[]);
    let client = openai(&d);
    let mut n = CreateChatCompletionRequestArgs::default();
    n.messages(conversation()).n(2u8);
    let (status, message) = api_error(client.chat().create(n.build().unwrap()).await.unwrap_err());
    assert_eq!((status, message.as_str()), (400, "not supported by steadytext: n > 1"));

    let ask = |body: Value| d.request("POST", "/v1/chat/completions", &[], &body.to_string());
    let tools = json!({"messages": [{"role": "user", "content": "hi"}],
                       "tools": [{"type": "function", "function": {"name": "f"}}]});
    let (status, body) = ask(tools);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not supported by steadytext: tools"), "{body}");

    let image = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]});
    let (status, body) = ask(image);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not supported by steadytext: image_url content parts"), "{body}");

    // response_format json_schema is constrained decoding: the content is JSON of the schema
    let schema = json!({"type": "object", "required": ["city"],
                        "properties": {"city": {"type": "string"}}});
    let (status, body) = ask(json!({
        "messages": [{"role": "user", "content": "Which city is the capital of France?"}],
        "max_tokens": 32,
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    }));
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let content = reply["choices"][0]["message"]["content"].as_str().unwrap();
    let city: Value = serde_json::from_str(content).unwrap();
    assert!(city["city"].is_string(), "{content}");
}

#[tokio::test]
async fn a_model_without_any_chat_template_gets_a_400_naming_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-qwen3.gguf");
    steadytext_testkit::tiny_qwen3_reranker::write(
        &model,
        "tiny",
        3,
        steadytext_testkit::tiny_qwen3_reranker::Head::Logits,
    )
    .unwrap();
    let d =
        Daemon::serve_with_env(&[], &[("STEADYTEXT_GENERATION_MODEL", model.to_str().unwrap())]);
    let mut r = CreateChatCompletionRequestArgs::default();
    r.messages(conversation()).max_completion_tokens(4u32);
    let (status, message) =
        api_error(openai(&d).chat().create(r.build().unwrap()).await.unwrap_err());
    assert_eq!(status, 400, "{message}");
    assert_eq!(
        message,
        "model tiny-qwen3.gguf cannot format chat messages: it has no tokenizer.chat_template \
         and its family (qwen3) has no known chat template"
    );
}

#[test]
fn a_client_that_goes_away_mid_stream_stops_its_generation() {
    let d = Daemon::serve(&[]);
    let body = json!({"prompt": "Write a very long story about a dragon.", "max_tokens": 2000,
                      "stream": true})
    .to_string();
    let mut s = TcpStream::connect(d.url.trim_start_matches("http://")).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut lines = BufReader::new(s);
    let mut chunks = 0;
    let mut line = String::new();
    while chunks < 3 {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "the stream ended early");
        if line.starts_with("data: {") {
            chunks += 1;
        }
    }
    drop(lines);
    let abandoned = ENGINE_ABANDONED;
    wait_until(Duration::from_secs(30), "the generation to be abandoned", || {
        (d.counter(abandoned).unwrap() >= 1.0).then_some(())
    });
    let tokens = d.counter(GENERATED_TOKENS).unwrap();
    assert!(tokens < 2000.0, "stopped before its budget, after {tokens} tokens");
}
