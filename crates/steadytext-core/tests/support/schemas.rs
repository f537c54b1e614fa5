//! A deterministic generator of JSON Schemas — objects nesting arrays, strings (with lengths or
//! patterns), integers and numbers with bounds, booleans and enums, with required and optional
//! keys — each with its shortest compact instance, the test oracle for "the shortest completion
//! fits the budget". Shared by `tests/generate_budget.rs` and the guide's unit tests.

use serde_json::{json, Map, Value};

/// A small linear congruential generator: the same seed gives the same schemas everywhere.
pub struct Lcg(u64);

impl Lcg {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1))
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

/// A generated schema and its shortest compact instance.
pub struct GeneratedSchema {
    /// The JSON Schema (always an object schema at the top, like the documentation's).
    pub schema: Value,
    /// The shortest compact JSON text valid against `schema`.
    pub shortest: String,
}

/// `count` schemas from `seed`.
pub fn generate(seed: u64, count: usize) -> Vec<GeneratedSchema> {
    let mut rng = Lcg::new(seed);
    (0..count)
        .map(|_| {
            let (schema, shortest) = object(&mut rng, 2);
            GeneratedSchema { schema, shortest }
        })
        .collect()
}

const KEYS: [&str; 12] = [
    "name", "age", "tags", "city", "items", "score", "kind", "id", "notes", "active", "size",
    "owner",
];
const WORDS: [&str; 8] = ["red", "green", "blue", "small", "large", "yes", "no", "unknown"];

/// A schema of any kind (objects and arrays only while `depth` > 0) and its shortest instance.
fn node(rng: &mut Lcg, depth: u32) -> (Value, String) {
    let kinds = if depth > 0 { 8 } else { 6 };
    match rng.below(kinds) {
        0 => string(rng),
        1 => {
            let min = rng.below(21);
            let max = min + rng.below(201);
            (json!({"type": "integer", "minimum": min, "maximum": max}), min.to_string())
        }
        2 => {
            let min = rng.below(21);
            (json!({"type": "number", "minimum": min, "maximum": min + 1000}), min.to_string())
        }
        3 => (json!({"type": "boolean"}), "true".into()),
        4 | 5 => {
            let mut values: Vec<&str> = Vec::new();
            while values.len() < 2 + rng.below(3) as usize {
                let w = WORDS[rng.below(WORDS.len() as u32) as usize];
                if !values.contains(&w) {
                    values.push(w);
                }
            }
            let shortest = values.iter().min_by_key(|w| w.len()).unwrap();
            (json!({"enum": values}), format!("\"{shortest}\""))
        }
        6 => {
            let (items, item) = node(rng, depth - 1);
            let min = rng.below(3);
            let mut schema = json!({"type": "array", "items": items, "minItems": min});
            if rng.below(2) == 0 {
                schema["maxItems"] = json!(min + 1 + rng.below(4));
            }
            (schema, format!("[{}]", vec![item; min as usize].join(",")))
        }
        _ => object(rng, depth - 1),
    }
}

/// A string schema: free, with a length range, or with a pattern.
fn string(rng: &mut Lcg) -> (Value, String) {
    match rng.below(3) {
        0 => (json!({"type": "string"}), "\"\"".into()),
        1 => {
            let min = rng.below(4);
            let max = min + rng.below(12);
            let schema = json!({"type": "string", "minLength": min, "maxLength": max});
            (schema, format!("\"{}\"", "a".repeat(min as usize)))
        }
        _ => {
            let min = 1 + rng.below(3);
            let pattern = format!("^[a-z]{{{min},{}}}$", min + 4);
            (
                json!({"type": "string", "pattern": pattern}),
                format!("\"{}\"", "a".repeat(min as usize)),
            )
        }
    }
}

/// An object schema of 1–4 properties, each required or not, extra keys allowed or not.
fn object(rng: &mut Lcg, depth: u32) -> (Value, String) {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut shortest = Vec::new();
    let n = 1 + rng.below(4);
    while properties.len() < n as usize {
        let key = KEYS[rng.below(KEYS.len() as u32) as usize];
        if properties.contains_key(key) {
            continue;
        }
        let (schema, instance) = node(rng, depth);
        properties.insert(key.into(), schema);
        if rng.below(2) == 0 {
            required.push(key);
            shortest.push(format!("\"{key}\":{instance}"));
        }
    }
    let mut schema = json!({"type": "object", "properties": properties, "required": required});
    if rng.below(2) == 0 {
        schema["additionalProperties"] = json!(false);
    }
    (schema, format!("{{{}}}", shortest.join(",")))
}
