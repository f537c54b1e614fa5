//! The one machine-readable line each figure prints:
//! `bench figure=NAME key=value … load1=L` (values never contain spaces).

use std::fmt;

use crate::stats::Summary;

/// One output line under construction.
#[derive(Debug, Clone)]
pub struct Line {
    fields: Vec<(String, String)>,
}

impl Line {
    /// A line for figure `name`.
    pub fn new(name: &str) -> Self {
        Self { fields: vec![("figure".into(), clean(name))] }
    }

    /// Adds `key=value`; spaces and `=` in the value become `_`.
    pub fn field(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.fields.push((clean(key), clean(&value.to_string())));
        self
    }

    /// Adds `key=value` with `decimals` digits after the point.
    pub fn num(self, key: &str, value: f64, decimals: usize) -> Self {
        self.field(key, format!("{value:.decimals$}"))
    }

    /// Adds `{prefix}_p50_ms`, `_p95_ms`, `_p99_ms`, `_max_ms` and `n`-style sample count.
    pub fn latency(self, prefix: &str, s: &Summary) -> Self {
        self.field(&format!("{prefix}_n"), s.n)
            .num(&format!("{prefix}_p50_ms"), s.p50, 2)
            .num(&format!("{prefix}_p95_ms"), s.p95, 2)
            .num(&format!("{prefix}_p99_ms"), s.p99, 2)
            .num(&format!("{prefix}_max_ms"), s.max, 2)
    }

    /// Adds the 1-minute load average (`load1`, from /proc/loadavg), or `load1=unknown`.
    pub fn with_load(self) -> Self {
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        self.field("load1", load)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bench")?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_whitespace() || c == '=' { '_' } else { c }).collect()
}

/// Parses `key=value` pairs of a `bench …` line (also `steadytext bench` output); returns the
/// value of `key`.
pub fn field_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fields_in_order() {
        let l = Line::new("enqueue_single").field("jobs", 10000).num("seconds", 1.23456, 3);
        assert_eq!(l.to_string(), "bench figure=enqueue_single jobs=10000 seconds=1.235");
    }

    #[test]
    fn values_never_break_the_line() {
        let l = Line::new("a b").field("note", "x y=z");
        assert_eq!(l.to_string(), "bench figure=a_b note=x_y_z");
    }

    #[test]
    fn latency_fields() {
        let s = Summary { n: 3, p50: 1.0, p95: 2.0, p99: 3.0, max: 4.5 };
        assert_eq!(
            Line::new("f").latency("rt", &s).to_string(),
            "bench figure=f rt_n=3 rt_p50_ms=1.00 rt_p95_ms=2.00 rt_p99_ms=3.00 rt_max_ms=4.50"
        );
    }

    #[test]
    fn load_is_the_last_field() {
        let l = Line::new("f").with_load().to_string();
        let last = l.rsplit(' ').next().unwrap();
        assert!(last.starts_with("load1="), "{l}");
        assert_ne!(last, "load1=", "{l}");
    }

    #[test]
    fn parses_fields() {
        let l = "bench generate_single prompts=8 threads=2 tokens=256 tokens_per_s=101.5";
        assert_eq!(field_of(l, "tokens_per_s"), Some("101.5"));
        assert_eq!(field_of(l, "threads"), Some("2"));
        assert_eq!(field_of(l, "missing"), None);
    }
}
