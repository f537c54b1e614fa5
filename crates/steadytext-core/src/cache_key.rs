//! Cache keys of deterministic results: a digest of everything that determines an output.

use sha2::{Digest, Sha256};

/// The cache key of a result: sha256 (hex) of the model file's digest, the function name and
/// the request's parameters in canonical JSON (object keys sorted, no whitespace). Two requests
/// share a key exactly when the engine must give them byte-identical outputs.
pub fn cache_key(model_digest: &str, function: &str, params: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    for part in [model_digest.as_bytes(), function.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let mut canonical = String::new();
    write_canonical(params, &mut canonical);
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// Writes `v` as JSON with object keys sorted at every level, whatever map order serde_json
/// was built with (its `preserve_order` feature may be enabled by another dependency).
fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_cover_every_part_and_ignore_key_order() {
        let a = cache_key("d1", "generate", &json!({"prompt": "x", "seed": 1}));
        let b: serde_json::Value = serde_json::from_str(r#"{"seed":1,"prompt":"x"}"#).unwrap();
        assert_eq!(a, cache_key("d1", "generate", &b));
        assert_ne!(a, cache_key("d2", "generate", &json!({"prompt": "x", "seed": 1})));
        assert_ne!(a, cache_key("d1", "embed", &json!({"prompt": "x", "seed": 1})));
        assert_ne!(a, cache_key("d1", "generate", &json!({"prompt": "x", "seed": 2})));
        // no ambiguity between the digest and the function name
        assert_ne!(cache_key("ab", "c", &json!({})), cache_key("a", "bc", &json!({})));
        assert_eq!(a.len(), 64);
        let mut out = String::new();
        write_canonical(&json!({"b": [1, {"d": 2, "c": "x"}], "a": null}), &mut out);
        assert_eq!(out, r#"{"a":null,"b":[1,{"c":"x","d":2}]}"#);
    }
}
