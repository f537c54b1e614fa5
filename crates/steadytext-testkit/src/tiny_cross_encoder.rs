//! A tiny BERT cross-encoder GGUF with deterministic pseudo-random weights, written on demand
//! so that tests exercise llama.cpp's rank pooling (`[CLS]` row → `cls` dense + tanh →
//! `cls.output` → one score) without a real reranker model. Its scores mean nothing; they are
//! finite, vary with the input and are a pure function of the file.

use std::path::Path;

use steadytext_core::bert_gguf::phantom;
use steadytext_core::gguf::{self, Tensor, TensorType, Value};
use steadytext_core::CoreError;

/// Hidden size of the fixture.
pub const HIDDEN: usize = 32;
/// Feed-forward size of the fixture.
pub const FEED_FORWARD: usize = 64;
/// Transformer layers of the fixture.
pub const LAYERS: usize = 2;
/// Attention heads of the fixture.
pub const HEADS: usize = 2;
/// Trained context (position embeddings) of the fixture.
pub const CONTEXT: usize = 512;

/// `LLAMA_POOLING_TYPE_RANK`, the `<arch>.pooling_type` of rerankers.
pub const POOLING_RANK: u32 = 4;

const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// The fixture's words (lower case; anything else tokenizes to `[UNK]`).
pub const WORDS: &[&str] = &[
    "the", "a", "of", "and", "to", "in", "is", "what", "how", "why", "cat", "cats", "dog", "dogs",
    "sat", "on", "mat", "capital", "france", "paris", "germany", "berlin", "city", "river",
    "weather", "rain", "sun", "cold", "hot", "water", "boils", "at", "degrees", "database",
    "postgres", "query", "index", "table", "rust", "code", "compiler", "fast", "slow", "apple",
    "banana", "fruit", "eat", "red", "green", "blue", "music", "song", "play", "guitar",
];

/// Writes the fixture to `path` (same bytes for the same `seed`).
pub fn write(path: &Path, seed: u64) -> Result<(), CoreError> {
    let io = |source| CoreError::Io { path: path.to_owned(), source };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    gguf::write(&mut w, &metadata(), &tensors(seed)).map_err(io)?;
    w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)
}

fn metadata() -> Vec<(String, Value)> {
    let mut tokens: Vec<String> = SPECIAL.iter().map(|s| s.to_string()).collect();
    tokens.extend(WORDS.iter().map(|w| phantom(w)));
    let types: Vec<i32> =
        (0..tokens.len()).map(|i| if i < SPECIAL.len() { 3 } else { 1 }).collect();
    let s = |k: &str| k.to_string();
    let u = |v: usize| Value::U32(v as u32);
    vec![
        (s("general.architecture"), Value::Str("bert".into())),
        (s("general.name"), Value::Str("tiny-cross-encoder".into())),
        (s("general.file_type"), Value::U32(0)),
        (s("bert.context_length"), u(CONTEXT)),
        (s("bert.embedding_length"), u(HIDDEN)),
        (s("bert.feed_forward_length"), u(FEED_FORWARD)),
        (s("bert.block_count"), u(LAYERS)),
        (s("bert.attention.head_count"), u(HEADS)),
        (s("bert.attention.layer_norm_epsilon"), Value::F32(1e-12)),
        (s("bert.attention.causal"), Value::Bool(false)),
        (s("bert.pooling_type"), Value::U32(POOLING_RANK)),
        (s("tokenizer.ggml.token_type_count"), Value::U32(2)),
        (s("tokenizer.ggml.model"), Value::Str("bert".into())),
        (s("tokenizer.ggml.pre"), Value::Str("default".into())),
        (s("tokenizer.ggml.tokens"), Value::StrArray(tokens)),
        (s("tokenizer.ggml.token_type"), Value::I32Array(types)),
        (s("tokenizer.ggml.padding_token_id"), Value::U32(0)),
        (s("tokenizer.ggml.unknown_token_id"), Value::U32(1)),
        (s("tokenizer.ggml.cls_token_id"), Value::U32(2)),
        (s("tokenizer.ggml.bos_token_id"), Value::U32(2)),
        (s("tokenizer.ggml.seperator_token_id"), Value::U32(3)),
        (s("tokenizer.ggml.mask_token_id"), Value::U32(4)),
        (s("tokenizer.ggml.add_bos_token"), Value::Bool(true)),
        (s("tokenizer.ggml.add_sep_token"), Value::Bool(true)),
    ]
}

/// xorshift64* numbers in `[-scale, scale)` (shared by the test fixtures).
pub(crate) struct Noise(pub(crate) u64);

impl Noise {
    pub(crate) fn next(&mut self, scale: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 bits
        (x as f32 / (1u64 << 23) as f32 - 1.0) * scale
    }
}

fn tensors(seed: u64) -> Vec<Tensor> {
    let mut noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let vocab = SPECIAL.len() + WORDS.len();
    let mut out = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, fill: &mut dyn FnMut() -> f32| {
        let n: u64 = dims.iter().product();
        let data = (0..n).flat_map(|_| fill().to_le_bytes()).collect();
        out.push(Tensor { name, dims, ty: TensorType::F32, data });
    };
    let (h, ff) = (HIDDEN as u64, FEED_FORWARD as u64);
    let w = 1.0 / (HIDDEN as f32).sqrt();
    add("token_embd.weight".into(), vec![h, vocab as u64], &mut || noise.next(1.0));
    add("token_types.weight".into(), vec![h, 2], &mut || noise.next(0.1));
    add("position_embd.weight".into(), vec![h, CONTEXT as u64], &mut || noise.next(0.1));
    add("token_embd_norm.weight".into(), vec![h], &mut || 1.0);
    add("token_embd_norm.bias".into(), vec![h], &mut || 0.0);
    for l in 0..LAYERS {
        for part in ["attn_q", "attn_k", "attn_v", "attn_output"] {
            add(format!("blk.{l}.{part}.weight"), vec![h, h], &mut || noise.next(w));
            add(format!("blk.{l}.{part}.bias"), vec![h], &mut || noise.next(0.02));
        }
        for norm in ["attn_output_norm", "layer_output_norm"] {
            add(format!("blk.{l}.{norm}.weight"), vec![h], &mut || 1.0);
            add(format!("blk.{l}.{norm}.bias"), vec![h], &mut || 0.0);
        }
        add(format!("blk.{l}.ffn_up.weight"), vec![h, ff], &mut || noise.next(w));
        add(format!("blk.{l}.ffn_up.bias"), vec![ff], &mut || noise.next(0.02));
        add(format!("blk.{l}.ffn_down.weight"), vec![ff, h], &mut || noise.next(0.125));
        add(format!("blk.{l}.ffn_down.bias"), vec![h], &mut || noise.next(0.02));
    }
    add("cls.weight".into(), vec![h, h], &mut || noise.next(w));
    add("cls.bias".into(), vec![h], &mut || noise.next(0.02));
    add("cls.output.weight".into(), vec![h, 1], &mut || noise.next(w));
    add("cls.output.bias".into(), vec![1], &mut || 0.0);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
