//! Figure 9: a long prompt arriving beside running generations. `steadytext serve --max-batch
//! 9` streams 8 generations (OpenAI `/v1/completions`, `stream: true`); once each has streamed
//! a few pieces, a request with a prompt of about 1 500 tokens arrives. Measured: the running
//! generations' longest gap between two pieces from its arrival to its first piece, against
//! their median gap before it (one decode step); and the long request's time to first piece.
//!
//! Anchors, in the same run on the same daemon with nothing else running: the long prompt
//! alone (its time to first piece is its whole prefill, which is how long every running
//! generation stood still when a prompt was prefilled in one piece), and a prompt of one chunk
//! (512 tokens) alone. Targets (issue #22): longest gap ≤ 2 decode steps + one chunk; time to
//! first piece ≤ 1.5 × the prompt alone. A chunk deep in a prompt costs more than the first
//! (its queries attend to all the tokens before it), so the line gives two chunk anchors: the
//! first chunk alone, and the mean chunk of the long prompt (its whole prefill over its number
//! of chunks).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::completion::poll;
use crate::error::{BenchError, Result};
use crate::report::Line;
use crate::setup::Env;
use crate::stats::percentile;

/// Running generations beside the long prompt.
const RUNNING: usize = 8;

/// Tokens each running generation asks for: more than it decodes while the long prompt fills.
const RUNNING_TOKENS: u32 = 400;

/// Pieces each running generation streams before the long prompt arrives.
const PIECES_BEFORE: usize = 12;

/// The long prompt (about 1 500 tokens of Gemma's tokenizer), made distinct per trial.
fn long_prompt(trial: u32) -> String {
    format!("Trial {trial}. {}", "The history of the city is long and complicated. ".repeat(150))
}

/// A prompt of about one 512-token chunk.
fn chunk_prompt(trial: u32) -> String {
    format!("Trial {trial}. {}", "The history of the city is long and complicated. ".repeat(50))
}

/// Runs `trials` trials and prints one line each.
pub fn run(env: &Env, trials: u32) -> Result<()> {
    let serve = env.serve(&["--max-batch", &(RUNNING + 1).to_string()])?;
    let addr = serve.url.trim_start_matches("http://").to_owned();
    stream(&addr, "Warm-up:", 4, 1, &mut Vec::new())?;
    for trial in 0..trials {
        // anchors: the long prompt alone, one chunk alone (distinct seeds: no cache hit)
        let seed = 1000 + trial;
        let (alone_ms, long_tokens) = first_piece_ms(&addr, &long_prompt(trial), seed)?;
        let (chunk_ms, _) = first_piece_ms(&addr, &chunk_prompt(trial), seed)?;
        let chunks = long_tokens.div_ceil(512).max(1);
        let mean_chunk_ms = alone_ms / f64::from(chunks);

        let logs: Vec<Arc<Mutex<Vec<Instant>>>> =
            (0..RUNNING).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
        let threads: Vec<_> = logs
            .iter()
            .enumerate()
            .map(|(i, log)| {
                let (addr, log) = (addr.clone(), Arc::clone(log));
                let prompt = format!("Story {trial}-{i}: Once upon a time");
                std::thread::spawn(move || -> Result<()> {
                    let sink = Sink::Shared(&log);
                    stream_into(&addr, &prompt, RUNNING_TOKENS, 100 + i as u32, sink).map(drop)
                })
            })
            .collect();
        poll(Duration::from_secs(600), "the running generations to stream", || {
            Ok(logs.iter().all(|l| l.lock().expect("log").len() >= PIECES_BEFORE).then_some(()))
        })?;
        let arrived = Instant::now();
        let mut long = Vec::new();
        stream(&addr, &long_prompt(trial), 4, 7 + trial, &mut long)?;
        let first = *long.first().ok_or_else(|| no_piece("the long prompt"))?;
        for t in threads {
            t.join().map_err(|_| BenchError::Process("a streaming thread panicked".into()))??;
        }
        let (mut before, mut during) = (Vec::new(), Vec::new());
        for log in &logs {
            let log = log.lock().expect("log");
            if log.last().is_none_or(|&last| last < first) {
                return Err(BenchError::Process(format!(
                    "a running generation ended before the long prompt's first piece; raise \
                     RUNNING_TOKENS ({RUNNING_TOKENS})"
                )));
            }
            for w in log.windows(2) {
                let gap = w[1].duration_since(w[0]).as_secs_f64() * 1000.0;
                if w[1] < arrived {
                    before.push(gap);
                } else if w[0] <= first {
                    during.push(gap);
                }
            }
        }
        before.sort_by(f64::total_cmp);
        let step_ms = percentile(&before, 50.0)?;
        let longest_ms = during.iter().copied().fold(0.0, f64::max);
        let ttft_ms = first.duration_since(arrived).as_secs_f64() * 1000.0;
        let gap_target = 2.0 * step_ms + chunk_ms;
        let mean_target = 2.0 * step_ms + mean_chunk_ms;
        println!(
            "{}",
            Line::new("long_prompt_stall")
                .field("trial", trial)
                .field("running", RUNNING)
                .field("threads", env.serve_threads())
                .num("decode_step_ms", step_ms, 1)
                .num("longest_gap_ms", longest_ms, 1)
                .num("one_chunk_alone_ms", chunk_ms, 1)
                .num("gap_target_ms", gap_target, 1)
                .num("gap_ratio", longest_ms / gap_target, 2)
                .field("long_prompt_tokens", long_tokens)
                .num("mean_chunk_ms", mean_chunk_ms, 1)
                .num("gap_ratio_to_mean_chunk", longest_ms / mean_target, 2)
                .num("whole_prompt_alone_ms", alone_ms, 1)
                .num("first_piece_ms", ttft_ms, 1)
                .num("first_piece_ratio", ttft_ms / alone_ms, 2)
                .with_load()
        );
    }
    Ok(())
}

/// Time to the first streamed piece of `prompt` (4 tokens) sent alone, and its prompt tokens.
fn first_piece_ms(addr: &str, prompt: &str, seed: u32) -> Result<(f64, u32)> {
    let start = Instant::now();
    let mut times = Vec::new();
    let tokens = stream(addr, prompt, 4, seed, &mut times)?;
    let first = times.first().ok_or_else(|| no_piece("a prompt alone"))?;
    let tokens = tokens.ok_or_else(|| BenchError::Process("no usage in the stream".into()))?;
    Ok((first.duration_since(start).as_secs_f64() * 1000.0, tokens))
}

fn no_piece(what: &str) -> BenchError {
    BenchError::Process(format!("{what} streamed no piece"))
}

/// Where the arrival times of streamed pieces go.
enum Sink<'a> {
    Own(&'a mut Vec<Instant>),
    Shared(&'a Mutex<Vec<Instant>>),
}

/// Streams a completion and appends the arrival time of every piece with text to `times`;
/// returns the prompt tokens of its `usage`.
fn stream(
    addr: &str,
    prompt: &str,
    max_tokens: u32,
    seed: u32,
    times: &mut Vec<Instant>,
) -> Result<Option<u32>> {
    stream_into(addr, prompt, max_tokens, seed, Sink::Own(times))
}

/// `POST /v1/completions` with `stream: true` and the usage asked for, as HTTP/1.0 (the body
/// then ends with the connection, without chunk framing), reading the server-sent events as
/// they arrive; returns the prompt tokens of the usage chunk.
fn stream_into(
    addr: &str,
    prompt: &str,
    max_tokens: u32,
    seed: u32,
    mut sink: Sink<'_>,
) -> Result<Option<u32>> {
    let body = format!(
        "{{\"prompt\":{},\"max_tokens\":{max_tokens},\"seed\":{seed},\"stream\":true,\
         \"stream_options\":{{\"include_usage\":true}}}}",
        json_string(prompt)
    );
    let mut s = TcpStream::connect(addr).map_err(BenchError::io("connecting to serve"))?;
    write!(
        s,
        "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(BenchError::io("sending a completion"))?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    let mut status = None;
    let mut prompt_tokens = None;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(BenchError::io("reading a stream"))? == 0 {
            break;
        }
        let now = Instant::now();
        if status.is_none() {
            status = line.split(' ').nth(1).map(str::to_owned);
            if status.as_deref() != Some("200") {
                return Err(BenchError::Process(format!("completion answered {line:?}")));
            }
            continue;
        }
        let Some(data) = line.trim_end().strip_prefix("data: ") else { continue };
        if data == "[DONE]" {
            break;
        }
        if let Some((_, rest)) = data.split_once("\"prompt_tokens\":") {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            prompt_tokens = digits.parse().ok();
        }
        // a piece with text: `"text":"` followed by something other than the closing quote
        if data.contains("\"text\":\"") && !data.contains("\"text\":\"\"") {
            match &mut sink {
                Sink::Own(times) => times.push(now),
                Sink::Shared(times) => times.lock().expect("log").push(now),
            }
        }
    }
    Ok(prompt_tokens)
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
