//! pgvector's text form of an embedding, `[x,y,…]`: how an asynchronous embedding's result is
//! stored in `steadytext_queue.result` (castable to `vector`) and how the typed accessor reads
//! it back, written and parsed in this one place.

/// `v` as `[x,y,…]`, each component in Rust's shortest round-trip decimal form (so parsing it
/// back gives the same f32 bits).
pub fn format(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 12 + 2);
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&x.to_string());
    }
    out.push(']');
    out
}

/// Parses `[0.1,0.2]` (no elements: `[]`); `None` for anything else or a non-finite component.
pub fn parse(text: &str) -> Option<Vec<f32>> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner.split(',').map(|x| x.trim().parse::<f32>().ok().filter(|v| v.is_finite())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_bit_for_bit() {
        let v = [0.1f32, -2.5e-7, 1.0, 0.067_656_87];
        let text = format(&v);
        assert!(text.starts_with("[0.1,-0.00000025,1,") && text.ends_with(']'), "{text}");
        assert_eq!(parse(&text).unwrap(), v);
        assert_eq!(format(&[]), "[]");
        assert_eq!(parse(" [] "), Some(vec![]));
    }

    #[test]
    fn malformed_text_is_refused() {
        assert_eq!(parse("[0.5, -1,2e-1]"), Some(vec![0.5, -1.0, 0.2]));
        assert_eq!(parse("0.5,1"), None);
        assert_eq!(parse("[0.5,x]"), None);
        assert_eq!(parse("[NaN]"), None);
    }
}
