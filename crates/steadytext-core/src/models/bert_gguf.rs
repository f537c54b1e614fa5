//! Conversion of a sentence-transformers BERT folder (safetensors + tokenizer.json) into a GGUF
//! file that llama.cpp's `bert` architecture loads, following the layout llama.cpp's
//! `convert_hf_to_gguf.py` (`BertModel`) writes: F32 weights, WordPiece vocabulary with
//! "phantom space" word starts, token types, special token ids and the pooling type.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;

use crate::gguf::{self, Tensor, TensorType, Value};
use crate::CoreError;

/// llama.cpp's pooling type ids (`bert.pooling_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens of a sequence (id 1).
    Mean,
    /// The `[CLS]` token (id 2).
    Cls,
}

impl Pooling {
    /// The id llama.cpp stores in `<arch>.pooling_type`.
    pub fn id(self) -> u32 {
        match self {
            Pooling::Mean => 1,
            Pooling::Cls => 2,
        }
    }
}

/// GGUF token types (`tokenizer.ggml.token_type`), as in llama.cpp.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

/// Converts the sentence-transformers BERT model in `folder` into the GGUF file `out`.
///
/// The file is written next to `out` under a temporary name and renamed into place, so a
/// crash never leaves a truncated model behind.
pub fn convert(folder: &Path, out: &Path) -> Result<(), CoreError> {
    if !folder.join("model.safetensors").exists() {
        return Err(CoreError::ModelMissing { path: folder.join("model.safetensors") });
    }
    let config = read_json(&folder.join("config.json"))?;
    let pooling = read_pooling(folder)?;
    let tokenizer = read_json(&folder.join("tokenizer.json"))?;
    let weights_path = folder.join("model.safetensors");
    let bytes = std::fs::read(&weights_path).map_err(|e| io_err(&weights_path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format_err(&weights_path, e))?;

    let name = folder.file_name().and_then(|n| n.to_str()).unwrap_or("bert").to_string();
    let metadata = metadata(&name, &config, pooling, &tokenizer)
        .map_err(|reason| CoreError::ModelFormat { path: folder.to_owned(), reason })?;
    let tensors = tensors(&st)
        .map_err(|reason| CoreError::ModelFormat { path: weights_path.clone(), reason })?;

    let tmp = partial_path(out);
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        gguf::write(&mut w, &metadata, &tensors)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(out, e)
    })
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    out.with_file_name(name)
}

fn io_err(path: &Path, source: std::io::Error) -> CoreError {
    CoreError::Io { path: path.to_owned(), source }
}

fn format_err(path: &Path, reason: impl std::fmt::Display) -> CoreError {
    CoreError::ModelFormat { path: path.to_owned(), reason: reason.to_string() }
}

fn read_json(path: &Path) -> Result<Json, CoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| format_err(path, e))
}

/// Pooling of `1_Pooling/config.json`; mean when the folder has no pooling module.
fn read_pooling(folder: &Path) -> Result<Pooling, CoreError> {
    let path = folder.join("1_Pooling/config.json");
    if !path.exists() {
        return Ok(Pooling::Mean);
    }
    let cfg = read_json(&path)?;
    let on = |key: &str| cfg.get(key).and_then(Json::as_bool).unwrap_or(false);
    match (on("pooling_mode_mean_tokens"), on("pooling_mode_cls_token")) {
        (true, false) => Ok(Pooling::Mean),
        (false, true) => Ok(Pooling::Cls),
        _ => Err(format_err(&path, "only mean or CLS pooling is supported")),
    }
}

fn config_u32(config: &Json, key: &str) -> Result<u32, String> {
    config
        .get(key)
        .and_then(Json::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("config.json lacks integer {key}"))
}

/// llama.cpp's WordPiece spelling: `##piece` continues a word, other pieces start one and get
/// the phantom space `▁`; bracketed special tokens stay as they are.
pub fn phantom(token: &str) -> String {
    if token.starts_with('[') && token.ends_with(']') {
        token.to_string()
    } else if let Some(rest) = token.strip_prefix("##") {
        rest.to_string()
    } else {
        format!("\u{2581}{token}")
    }
}

fn metadata(
    name: &str,
    config: &Json,
    pooling: Pooling,
    tokenizer: &Json,
) -> Result<Vec<(String, Value)>, String> {
    if config.get("model_type").and_then(Json::as_str) != Some("bert") {
        return Err("config.json model_type is not \"bert\"".into());
    }
    if let Some(act) = config.get("hidden_act").and_then(Json::as_str) {
        if act != "gelu" {
            return Err(format!(
                "hidden_act {act:?} is not supported (llama.cpp's bert uses gelu)"
            ));
        }
    }
    let eps = config.get("layer_norm_eps").and_then(Json::as_f64).unwrap_or(1e-12) as f32;
    let vocab_size = config_u32(config, "vocab_size")? as usize;
    let (tokens, types, special) = vocab(tokenizer, vocab_size)?;
    let type_count = config_u32(config, "type_vocab_size").unwrap_or(2);

    let s = |k: &str| k.to_string();
    let mut md = vec![
        (s("general.architecture"), Value::Str("bert".into())),
        (s("general.name"), Value::Str(name.into())),
        (s("general.file_type"), Value::U32(0)), // all F32
        (s("general.quantization_version"), Value::U32(2)),
        (s("bert.context_length"), Value::U32(config_u32(config, "max_position_embeddings")?)),
        (s("bert.embedding_length"), Value::U32(config_u32(config, "hidden_size")?)),
        (s("bert.feed_forward_length"), Value::U32(config_u32(config, "intermediate_size")?)),
        (s("bert.block_count"), Value::U32(config_u32(config, "num_hidden_layers")?)),
        (s("bert.attention.head_count"), Value::U32(config_u32(config, "num_attention_heads")?)),
        (s("bert.attention.layer_norm_epsilon"), Value::F32(eps)),
        (s("bert.attention.causal"), Value::Bool(false)),
        (s("bert.pooling_type"), Value::U32(pooling.id())),
        (s("tokenizer.ggml.token_type_count"), Value::U32(type_count)),
        (s("tokenizer.ggml.model"), Value::Str("bert".into())),
        // Pre-tokenizer names only matter to BPE vocabularies; WordPiece ignores this key.
        (s("tokenizer.ggml.pre"), Value::Str("default".into())),
        (s("tokenizer.ggml.tokens"), Value::StrArray(tokens)),
        (s("tokenizer.ggml.token_type"), Value::I32Array(types)),
    ];
    for (key, id) in special {
        md.push((format!("tokenizer.ggml.{key}"), Value::U32(id)));
    }
    md.push((s("tokenizer.ggml.add_bos_token"), Value::Bool(true)));
    md.push((s("tokenizer.ggml.add_sep_token"), Value::Bool(true)));
    Ok(md)
}

type Vocab = (Vec<String>, Vec<i32>, Vec<(&'static str, u32)>);

/// Token list (phantom-space spelling), token types and special token ids of a WordPiece
/// `tokenizer.json`, with `vocab_size` entries (holes become `[PAD<id>]`, as upstream).
fn vocab(tokenizer: &Json, vocab_size: usize) -> Result<Vocab, String> {
    let model = tokenizer.get("model").ok_or("tokenizer.json has no model")?;
    if model.get("type").and_then(Json::as_str) != Some("WordPiece") {
        return Err("tokenizer.json model is not WordPiece".into());
    }
    let map = model.get("vocab").and_then(Json::as_object).ok_or("tokenizer.json has no vocab")?;
    let mut by_id: Vec<Option<&str>> = vec![None; vocab_size];
    for (tok, id) in map {
        let id = id.as_u64().ok_or("non-integer vocab id")? as usize;
        if id >= vocab_size {
            return Err(format!("vocab id {id} of {tok:?} exceeds vocab_size {vocab_size}"));
        }
        by_id[id] = Some(tok);
    }
    let mut special_ids: HashMap<u64, bool> = HashMap::new();
    for added in tokenizer.get("added_tokens").and_then(Json::as_array).into_iter().flatten() {
        if let Some(id) = added.get("id").and_then(Json::as_u64) {
            special_ids.insert(id, added.get("special").and_then(Json::as_bool).unwrap_or(false));
        }
    }
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for (id, tok) in by_id.iter().enumerate() {
        match tok {
            None => {
                tokens.push(format!("[PAD{id}]"));
                types.push(TOKEN_USER_DEFINED);
            }
            Some(tok) => {
                tokens.push(phantom(tok));
                types.push(match special_ids.get(&(id as u64)) {
                    Some(true) => TOKEN_CONTROL,
                    Some(false) => TOKEN_USER_DEFINED,
                    None => TOKEN_NORMAL,
                });
            }
        }
    }
    let id_of = |t: &str| map.get(t).and_then(Json::as_u64).map(|v| v as u32);
    let mut special = Vec::new();
    for (key, tok) in [
        ("unknown_token_id", "[UNK]"),
        ("seperator_token_id", "[SEP]"), // llama.cpp's spelling
        ("padding_token_id", "[PAD]"),
        ("cls_token_id", "[CLS]"),
        ("mask_token_id", "[MASK]"),
        ("bos_token_id", "[CLS]"),
    ] {
        let id = id_of(tok).ok_or_else(|| format!("tokenizer.json lacks {tok}"))?;
        special.push((key, id));
    }
    Ok((tokens, types, special))
}

/// The GGUF name of a Hugging Face BERT tensor; `None` for tensors llama.cpp does not use.
pub fn tensor_name(hf: &str) -> Result<Option<String>, String> {
    let name = hf.strip_prefix("bert.").unwrap_or(hf);
    let name = name.replace(".gamma", ".weight").replace(".beta", ".bias");
    if name == "embeddings.position_ids" || name.starts_with("pooler.") {
        return Ok(None);
    }
    let (stem, suffix) = name.rsplit_once('.').ok_or_else(|| format!("unexpected tensor {hf}"))?;
    if suffix != "weight" && suffix != "bias" {
        return Err(format!("unexpected tensor {hf}"));
    }
    let mapped = match stem {
        "embeddings.word_embeddings" => "token_embd".to_string(),
        "embeddings.token_type_embeddings" => "token_types".to_string(),
        "embeddings.position_embeddings" => "position_embd".to_string(),
        "embeddings.LayerNorm" => "token_embd_norm".to_string(),
        _ => {
            let rest = stem
                .strip_prefix("encoder.layer.")
                .ok_or_else(|| format!("unexpected tensor {hf}"))?;
            let (n, part) =
                rest.split_once('.').ok_or_else(|| format!("unexpected tensor {hf}"))?;
            let n: u32 = n.parse().map_err(|_| format!("unexpected tensor {hf}"))?;
            let part = match part {
                "attention.self.query" => "attn_q",
                "attention.self.key" => "attn_k",
                "attention.self.value" => "attn_v",
                "attention.output.dense" => "attn_output",
                "attention.output.LayerNorm" => "attn_output_norm",
                "intermediate.dense" => "ffn_up",
                "output.dense" => "ffn_down",
                "output.LayerNorm" => "layer_output_norm",
                _ => return Err(format!("unexpected tensor {hf}")),
            };
            format!("blk.{n}.{part}")
        }
    };
    Ok(Some(format!("{mapped}.{suffix}")))
}

/// All tensors in GGUF naming, F32, sorted by name (the file layout does not depend on the
/// safetensors header order).
fn tensors(st: &SafeTensors<'_>) -> Result<Vec<Tensor>, String> {
    let mut out = Vec::new();
    for (hf, view) in st.tensors() {
        let Some(name) = tensor_name(&hf)? else {
            continue;
        };
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor {hf} is {:?}, only F32 is supported", view.dtype()));
        }
        // PyTorch shapes list the slowest dimension first; ggml lists the fastest first.
        let dims = view.shape().iter().rev().map(|&d| d as u64).collect();
        out.push(Tensor { name, dims, ty: TensorType::F32, data: view.data().to_vec() });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::read_header;

    #[test]
    fn phantom_space_spelling() {
        assert_eq!(phantom("hello"), "\u{2581}hello");
        assert_eq!(phantom("##ing"), "ing");
        assert_eq!(phantom("[CLS]"), "[CLS]");
    }

    #[test]
    fn tensor_names_follow_llama_cpp() {
        let cases = [
            ("embeddings.word_embeddings.weight", Some("token_embd.weight")),
            ("bert.embeddings.LayerNorm.gamma", Some("token_embd_norm.weight")),
            ("encoder.layer.5.attention.self.key.bias", Some("blk.5.attn_k.bias")),
            (
                "encoder.layer.0.attention.output.LayerNorm.weight",
                Some("blk.0.attn_output_norm.weight"),
            ),
            ("encoder.layer.3.output.dense.weight", Some("blk.3.ffn_down.weight")),
            ("embeddings.position_ids", None),
            ("pooler.dense.weight", None),
        ];
        for (hf, want) in cases {
            assert_eq!(tensor_name(hf).unwrap().as_deref(), want, "{hf}");
        }
        assert!(tensor_name("encoder.layer.0.crossattention.x.weight").is_err());
    }

    /// A two-layer-free tiny BERT folder: config, pooling, tokenizer and a few tensors.
    fn tiny_folder(dir: &Path) {
        std::fs::write(
            dir.join("config.json"),
            r#"{"model_type":"bert","hidden_act":"gelu","hidden_size":4,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":16,
                "type_vocab_size":2,"vocab_size":7,"layer_norm_eps":1e-12}"#,
        )
        .unwrap();
        std::fs::create_dir(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), r#"{"pooling_mode_mean_tokens":true}"#)
            .unwrap();
        std::fs::write(
            dir.join("tokenizer.json"),
            r#"{"added_tokens":[{"id":0,"content":"[PAD]","special":true},{"id":1,"content":"[UNK]","special":true},
                {"id":2,"content":"[CLS]","special":true},{"id":3,"content":"[SEP]","special":true},
                {"id":4,"content":"[MASK]","special":true}],
               "model":{"type":"WordPiece","vocab":{"[PAD]":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,"[MASK]":4,"hi":5}}}"#,
        )
        .unwrap();
        let f32s =
            |n: usize| -> Vec<u8> { (0..n).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect() };
        let word = f32s(7 * 4);
        let norm = f32s(4);
        let ids: Vec<u8> = (0..16i64).flat_map(|i| i.to_le_bytes()).collect();
        let views = vec![
            (
                "embeddings.word_embeddings.weight",
                safetensors::tensor::TensorView::new(Dtype::F32, vec![7, 4], &word).unwrap(),
            ),
            (
                "embeddings.LayerNorm.weight",
                safetensors::tensor::TensorView::new(Dtype::F32, vec![4], &norm).unwrap(),
            ),
            (
                "embeddings.position_ids",
                safetensors::tensor::TensorView::new(Dtype::I64, vec![1, 16], &ids).unwrap(),
            ),
        ];
        safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    }

    #[test]
    fn tiny_model_converts_with_llama_cpp_metadata() {
        let dir = tempfile::tempdir().unwrap();
        tiny_folder(dir.path());
        let out = dir.path().join("tiny.gguf");
        convert(dir.path(), &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let h = read_header(bytes.as_slice()).unwrap();
        assert_eq!(h.get("general.architecture"), Some(&Value::Str("bert".into())));
        assert_eq!(h.get("bert.embedding_length"), Some(&Value::U32(4)));
        assert_eq!(h.get("bert.block_count"), Some(&Value::U32(1)));
        assert_eq!(h.get("bert.context_length"), Some(&Value::U32(16)));
        assert_eq!(h.get("bert.pooling_type"), Some(&Value::U32(1)));
        assert_eq!(h.get("bert.attention.causal"), Some(&Value::Bool(false)));
        assert_eq!(h.get("tokenizer.ggml.model"), Some(&Value::Str("bert".into())));
        assert_eq!(h.get("tokenizer.ggml.token_type_count"), Some(&Value::U32(2)));
        assert_eq!(h.get("tokenizer.ggml.seperator_token_id"), Some(&Value::U32(3)));
        assert_eq!(h.get("tokenizer.ggml.cls_token_id"), Some(&Value::U32(2)));
        let Some(Value::StrArray(tokens)) = h.get("tokenizer.ggml.tokens") else {
            panic!("no tokens")
        };
        assert_eq!(tokens, &["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\u{2581}hi", "[PAD6]"]);
        let Some(Value::I32Array(types)) = h.get("tokenizer.ggml.token_type") else {
            panic!("no types")
        };
        assert_eq!(types, &[3, 3, 3, 3, 3, 1, 4]);
        // position_ids is dropped; names sorted; dims reversed to ggml order
        let names: Vec<_> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["token_embd.weight", "token_embd_norm.weight"]);
        assert_eq!(h.tensors[0].dims, vec![4, 7]);
        let t = &h.tensors[0];
        let start = (h.data_offset + t.offset) as usize;
        let first: Vec<f32> = bytes[start..start + 12]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(first, [0.0, 0.5, 1.0]);
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".partial")));
    }

    #[test]
    fn missing_folder_is_model_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = convert(&dir.path().join("nope"), &dir.path().join("x.gguf")).unwrap_err();
        assert!(matches!(err, CoreError::ModelMissing { .. }), "{err}");
    }

    #[test]
    fn non_bert_config_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        tiny_folder(dir.path());
        std::fs::write(dir.path().join("config.json"), r#"{"model_type":"gpt2"}"#).unwrap();
        let err = convert(dir.path(), &dir.path().join("x.gguf")).unwrap_err();
        assert!(matches!(err, CoreError::ModelFormat { .. }), "{err}");
    }
}
