//! A tiny `qwen3` causal LM GGUF with deterministic pseudo-random weights and a byte-level BPE
//! vocabulary in which "yes" and "no" are single tokens, written on demand so that tests run
//! the Qwen3-Reranker paths: yes/no logits, and (with [`Head::Rank`]) llama.cpp's rank
//! pooling over a `cls.output` head made of the "yes" and "no" rows of the output matrix.

use std::path::Path;

use crate::tiny_cross_encoder::Noise;
use steadytext_core::gguf::{self, Tensor, TensorType, Value};
use steadytext_core::CoreError;

const HIDDEN: u64 = 32;
const FEED_FORWARD: u64 = 64;
const LAYERS: usize = 2;
const HEADS: u64 = 2;
const KV_HEADS: u64 = 1;
const HEAD_DIM: u64 = HIDDEN / HEADS;
const CONTEXT: u32 = 1024;

/// Tokens after the 256 byte tokens: merges' results, then control tokens.
const EXTRA: [&str; 3] = ["ye", "yes", "no"];
const CONTROL: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// How the fixture exposes its judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Plain causal LM: the reranker reads the "yes"/"no" logits.
    Logits,
    /// Converted reranker: `qwen3.pooling_type = 4` and a two-row `cls.output` (yes, no).
    Rank,
}

/// Writes the fixture to `path`, named `name` (`general.name`); same bytes for the same
/// `seed`, and the same transformer weights for both heads.
pub fn write(path: &Path, name: &str, seed: u64, head: Head) -> Result<(), CoreError> {
    let io = |source| CoreError::Io { path: path.to_owned(), source };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    gguf::write(&mut w, &metadata(name, head), &tensors(seed, head)).map_err(io)?;
    w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)
}

/// GPT-2's byte → printable character mapping of byte-level BPE vocabularies.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("latin-1")
            } else {
                extra += 1;
                char::from_u32(255 + extra).expect("valid")
            }
        })
        .collect()
}

fn vocab() -> Vec<String> {
    let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
    tokens.extend(EXTRA.iter().chain(CONTROL.iter()).map(|s| s.to_string()));
    tokens
}

fn id_of(token: &str) -> u32 {
    vocab().iter().position(|t| t == token).expect("fixture token") as u32
}

fn metadata(name: &str, head: Head) -> Vec<(String, Value)> {
    let tokens = vocab();
    let types: Vec<i32> =
        (0..tokens.len()).map(|i| if i >= 256 + EXTRA.len() { 3 } else { 1 }).collect();
    let s = |k: &str| k.to_string();
    let u = |v: u64| Value::U32(v as u32);
    let mut md = vec![
        (s("general.architecture"), Value::Str("qwen3".into())),
        (s("general.name"), Value::Str(name.into())),
        (s("general.file_type"), Value::U32(0)),
        (s("qwen3.context_length"), Value::U32(CONTEXT)),
        (s("qwen3.embedding_length"), u(HIDDEN)),
        (s("qwen3.feed_forward_length"), u(FEED_FORWARD)),
        (s("qwen3.block_count"), u(LAYERS as u64)),
        (s("qwen3.attention.head_count"), u(HEADS)),
        (s("qwen3.attention.head_count_kv"), u(KV_HEADS)),
        (s("qwen3.attention.key_length"), u(HEAD_DIM)),
        (s("qwen3.attention.value_length"), u(HEAD_DIM)),
        (s("qwen3.rope.freq_base"), Value::F32(1_000_000.0)),
        (s("qwen3.attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (s("tokenizer.ggml.model"), Value::Str("gpt2".into())),
        (s("tokenizer.ggml.pre"), Value::Str("qwen2".into())),
        (s("tokenizer.ggml.tokens"), Value::StrArray(tokens)),
        (s("tokenizer.ggml.token_type"), Value::I32Array(types)),
        (
            s("tokenizer.ggml.merges"),
            Value::StrArray(vec!["y e".into(), "ye s".into(), "n o".into()]),
        ),
        (s("tokenizer.ggml.bos_token_id"), Value::U32(id_of("<|endoftext|>"))),
        (s("tokenizer.ggml.eos_token_id"), Value::U32(id_of("<|im_end|>"))),
        (s("tokenizer.ggml.padding_token_id"), Value::U32(id_of("<|endoftext|>"))),
        (s("tokenizer.ggml.add_bos_token"), Value::Bool(false)),
    ];
    if head == Head::Rank {
        md.push((s("qwen3.pooling_type"), Value::U32(crate::tiny_cross_encoder::POOLING_RANK)));
        md.push((
            s("qwen3.classifier.output_labels"),
            Value::StrArray(vec!["yes".into(), "no".into()]),
        ));
    }
    md
}

fn tensors(seed: u64, head: Head) -> Vec<Tensor> {
    let mut noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let n_vocab = vocab().len() as u64;
    let mut out = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, fill: &mut dyn FnMut() -> f32| {
        let n: u64 = dims.iter().product();
        let data: Vec<u8> = (0..n).flat_map(|_| fill().to_le_bytes()).collect();
        out.push(Tensor { name, dims, ty: TensorType::F32, data });
    };
    let w = 1.0 / (HIDDEN as f32).sqrt();
    add("token_embd.weight".into(), vec![HIDDEN, n_vocab], &mut || noise.next(1.0));
    add("output_norm.weight".into(), vec![HIDDEN], &mut || 1.0);
    for l in 0..LAYERS {
        add(format!("blk.{l}.attn_norm.weight"), vec![HIDDEN], &mut || 1.0);
        add(format!("blk.{l}.attn_q.weight"), vec![HIDDEN, HEAD_DIM * HEADS], &mut || {
            noise.next(w)
        });
        add(format!("blk.{l}.attn_k.weight"), vec![HIDDEN, HEAD_DIM * KV_HEADS], &mut || {
            noise.next(w)
        });
        add(format!("blk.{l}.attn_v.weight"), vec![HIDDEN, HEAD_DIM * KV_HEADS], &mut || {
            noise.next(w)
        });
        add(format!("blk.{l}.attn_output.weight"), vec![HEAD_DIM * HEADS, HIDDEN], &mut || {
            noise.next(w)
        });
        add(format!("blk.{l}.attn_q_norm.weight"), vec![HEAD_DIM], &mut || 1.0);
        add(format!("blk.{l}.attn_k_norm.weight"), vec![HEAD_DIM], &mut || 1.0);
        add(format!("blk.{l}.ffn_norm.weight"), vec![HIDDEN], &mut || 1.0);
        add(format!("blk.{l}.ffn_gate.weight"), vec![HIDDEN, FEED_FORWARD], &mut || noise.next(w));
        add(format!("blk.{l}.ffn_up.weight"), vec![HIDDEN, FEED_FORWARD], &mut || noise.next(w));
        add(format!("blk.{l}.ffn_down.weight"), vec![FEED_FORWARD, HIDDEN], &mut || {
            noise.next(0.125)
        });
    }
    if head == Head::Rank {
        // The output matrix is tied to the token embeddings: the head is their yes/no rows.
        let embd = &out[0].data;
        let row = |id: u32| {
            let start = id as usize * HIDDEN as usize * 4;
            embd[start..start + HIDDEN as usize * 4].to_vec()
        };
        let mut data = row(id_of("yes"));
        data.extend(row(id_of("no")));
        out.push(Tensor {
            name: "cls.output.weight".into(),
            dims: vec![HIDDEN, 2],
            ty: TensorType::F32,
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
