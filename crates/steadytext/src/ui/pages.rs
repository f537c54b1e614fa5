//! The dashboard's pages: askama templates (`templates/ui/`, compiled into the binary, every
//! value HTML-escaped) and the view of the data each one shows.

use askama::Template;
use serde_json::{Map, Value};

use super::data::{Filters, ListRow, Overview};
use crate::metrics::Metrics;

/// Every status, in the order of the state machine.
pub const STATUSES: [&str; 5] = ["pending", "processing", "completed", "failed", "cancelled"];

/// Every function, as `function_name` holds it.
pub const FUNCTIONS: [&str; 7] = [
    "generate",
    "generate_json",
    "generate_regex",
    "generate_choice",
    "embed",
    "embed_chunks",
    "rerank",
];

/// The age filter's choices: (seconds, label).
pub const AGES: [(&str, &str); 4] =
    [("300", "5 minutes"), ("3600", "1 hour"), ("86400", "1 day"), ("604800", "1 week")];

/// One function's row of the status table.
pub struct FunctionCounts {
    /// `function_name`.
    pub function: String,
    /// (status, count) in [`STATUSES`] order.
    pub counts: Vec<(&'static str, i64)>,
    /// All its requests.
    pub total: i64,
}

/// The engine figures of this daemon since it started.
pub struct EngineFigures {
    /// Tokens generated.
    pub tokens: u64,
    /// Tokens per second of decode time.
    pub tokens_per_s: f64,
    /// Sequences per decode step.
    pub occupancy: f64,
    /// Texts embedded.
    pub embedded: u64,
    /// Result cache lookups.
    pub lookups: u64,
    /// Their share of hits.
    pub hit_rate: f64,
}

impl EngineFigures {
    /// Read from `m`.
    pub fn from(m: &Metrics) -> Self {
        use steadytext_api::metric_names::{
            CACHE_LOOKUPS, DECODE_STEPS, DECODE_STEP_SEQUENCES, EMBEDDED_TEXTS, ENGINE_SECONDS,
            GENERATED_TOKENS,
        };
        let tokens = m.counter(GENERATED_TOKENS, &[]);
        let decode_s = m.counter(ENGINE_SECONDS, &[("kind", "generate")]);
        let steps = m.counter(DECODE_STEPS, &[]);
        let hits = m.counter(CACHE_LOOKUPS, &[("outcome", "hit")]);
        let lookups = m.counter(CACHE_LOOKUPS, &[]);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Self {
            tokens: tokens as u64,
            tokens_per_s: ratio(tokens, decode_s),
            occupancy: ratio(m.counter(DECODE_STEP_SEQUENCES, &[]), steps),
            embedded: m.counter(EMBEDDED_TEXTS, &[]) as u64,
            lookups: lookups as u64,
            hit_rate: ratio(hits, lookups),
        }
    }
}

/// `/ui`.
#[derive(Template)]
#[template(path = "ui/overview.html")]
pub struct OverviewPage {
    /// The navigation's current page.
    pub page: &'static str,
    /// When the figures were read.
    pub now: String,
    /// The status columns.
    pub statuses: [&'static str; 5],
    /// One row per function.
    pub by_function: Vec<FunctionCounts>,
    /// (status, count) over every function.
    pub totals: Vec<(&'static str, i64)>,
    /// Every request.
    pub total: i64,
    /// Whether the finished requests' counts are estimates from a sample.
    pub sampled: bool,
    /// Finished in the last hour.
    pub finished_hour: i64,
    /// Of them completed.
    pub completed_hour: i64,
    /// Failed.
    pub failed_hour: i64,
    /// Cancelled.
    pub cancelled_hour: i64,
    /// Completions per second over the hour.
    pub completions_per_s: f64,
    /// (minute, enqueued, completed, failed, cancelled) of the minutes in which any was.
    pub minutes: Vec<(String, i64, i64, i64, i64)>,
    /// The chart's data, every minute of the hour: `[[epoch s…], [enqueued…], [completed…],
    /// [failed…], [cancelled…]]` (JSON of numbers).
    pub chart_series: String,
    /// Wait and run times.
    pub latency: Vec<super::data::Latency>,
    /// Recent failures.
    pub failures: Vec<super::data::Failure>,
    /// The workers.
    pub workers: Vec<super::data::WorkerRow>,
    /// This daemon's engine.
    pub engine: EngineFigures,
    /// The derivations.
    pub derivations: Vec<super::data::DerivationRow>,
    /// Whether their rows in sync and waiting are estimates from a sample.
    pub derivations_sampled: bool,
    /// Whether the pause/resume buttons show (`--ui-actions`).
    pub actions: bool,
    /// The CSRF value of their forms.
    pub csrf: String,
}

impl OverviewPage {
    /// The page for `o`, read at `now_epoch` (seconds since the epoch); `csrf` when
    /// actions are on.
    pub fn new(o: Overview, now_epoch: i64, engine: EngineFigures, csrf: Option<&str>) -> Self {
        let mut functions: Vec<String> = o.counts.iter().map(|c| c.function.clone()).collect();
        functions.dedup();
        let count = |f: Option<&str>, s: &str| -> i64 {
            o.counts
                .iter()
                .filter(|c| c.status == s && f.is_none_or(|f| c.function == f))
                .map(|c| c.count)
                .sum()
        };
        let by_function: Vec<FunctionCounts> = functions
            .iter()
            .map(|f| {
                let counts: Vec<_> = STATUSES.iter().map(|s| (*s, count(Some(f), s))).collect();
                let total = counts.iter().map(|(_, n)| n).sum();
                FunctionCounts { function: f.clone(), counts, total }
            })
            .collect();
        let totals: Vec<_> = STATUSES.iter().map(|s| (*s, count(None, s))).collect();
        let total = totals.iter().map(|(_, n)| n).sum();
        let sum = |f: fn(&super::data::Minute) -> i64| o.minutes.iter().map(f).sum::<i64>();
        let (completed, failed, cancelled) =
            (sum(|m| m.completed), sum(|m| m.failed), sum(|m| m.cancelled));
        let chart_series = chart_series(&o.minutes, now_epoch);
        let minutes = o
            .minutes
            .iter()
            .map(|m| (minute_label(m.at), m.enqueued, m.completed, m.failed, m.cancelled))
            .collect();
        Self {
            page: "overview",
            now: time_label(now_epoch),
            statuses: STATUSES,
            by_function,
            totals,
            total,
            sampled: o.sampled,
            finished_hour: completed + failed + cancelled,
            completed_hour: completed,
            failed_hour: failed,
            cancelled_hour: cancelled,
            completions_per_s: completed as f64 / 3600.0,
            minutes,
            chart_series,
            latency: o.latency,
            failures: o.failures,
            workers: o.workers,
            engine,
            derivations: o.derivations,
            derivations_sampled: o.derivations_sampled,
            actions: csrf.is_some(),
            csrf: csrf.unwrap_or_default().to_owned(),
        }
    }
}

/// The 60 minutes up to the one holding `now` (seconds since the epoch), with the finished
/// counts of `minutes` and zeros elsewhere, as uPlot takes its data.
fn chart_series(minutes: &[super::data::Minute], now: i64) -> String {
    let last = now - now.rem_euclid(60);
    let xs: Vec<i64> = (0..60).map(|i| last - 60 * (59 - i)).collect();
    let column = |f: fn(&super::data::Minute) -> i64| -> Vec<i64> {
        xs.iter().map(|x| minutes.iter().find(|m| m.at == *x).map_or(0, f)).collect()
    };
    let enqueued = column(|m| m.enqueued);
    let (completed, failed) = (column(|m| m.completed), column(|m| m.failed));
    serde_json::json!([xs, enqueued, completed, failed, column(|m| m.cancelled)]).to_string()
}

/// `HH:MM` (UTC) of a minute given in seconds since the epoch.
fn minute_label(at: i64) -> String {
    let day = at.rem_euclid(86_400);
    format!("{:02}:{:02} UTC", day / 3600, day % 3600 / 60)
}

/// `HH:MM:SS` (UTC) of a time given in seconds since the epoch.
fn time_label(at: i64) -> String {
    format!("{}:{:02} UTC", &minute_label(at)[..5], at.rem_euclid(60))
}

/// `/ui/requests`.
#[derive(Template)]
#[template(path = "ui/requests.html")]
pub struct RequestsPage {
    /// The navigation's current page.
    pub page: &'static str,
    /// The status choices.
    pub statuses: [&'static str; 5],
    /// The function choices.
    pub functions: [&'static str; 7],
    /// The age choices.
    pub ages: [(&'static str, &'static str); 4],
    /// The filters in force.
    pub filters: Filters,
    /// The priority filter as typed.
    pub priority_text: String,
    /// The age filter as chosen.
    pub age: String,
    /// The page's rows.
    pub rows: Vec<ListRow>,
    /// The first page's address, when this is not it.
    pub first_page: Option<String>,
    /// The next page's address, when there is one.
    pub next_page: Option<String>,
    /// Whether this page read its [`SCAN`](super::data::SCAN) rows before it found a page
    /// of matches.
    pub scanned_only: bool,
    /// Rows one page reads at most.
    pub scan: i64,
}

/// How a result is shown.
pub enum ResultView {
    /// None yet (or never).
    None,
    /// Text as it is.
    Text(String),
    /// JSON, pretty-printed.
    Json(String),
    /// An embedding, summarised.
    Embedding(EmbeddingSummary),
}

/// An embedding's size, norm and first values.
pub struct EmbeddingSummary {
    /// Its dimensions.
    pub dimensions: usize,
    /// Its L2 norm.
    pub norm: f64,
    /// Its first 8 values.
    pub head: String,
}

impl ResultView {
    /// The view of `result` of a request of `function`.
    pub fn of(function: &str, result: Option<&str>) -> Self {
        let Some(text) = result else { return Self::None };
        if function.starts_with("embed") || function == "rerank" {
            if let Ok(values) = serde_json::from_str::<Vec<f64>>(text) {
                if function.starts_with("embed") && !values.is_empty() {
                    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let head: Vec<String> =
                        values.iter().take(8).map(|v| format!("{v:.4}")).collect();
                    return Self::Embedding(EmbeddingSummary {
                        dimensions: values.len(),
                        norm,
                        head: format!("[{}, …]", head.join(", ")),
                    });
                }
            }
        }
        match serde_json::from_str::<Value>(text) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => {
                Self::Json(serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_owned()))
            }
            _ => Self::Text(text.to_owned()),
        }
    }
}

/// `/ui/requests/{id}`.
#[derive(Template)]
#[template(path = "ui/request.html")]
pub struct RequestPage {
    /// The navigation's current page.
    pub page: &'static str,
    /// Its uuid.
    pub id: String,
    /// `function_name`.
    pub function: String,
    /// `status`.
    pub status: String,
    /// `priority`.
    pub priority: String,
    /// `owner`.
    pub owner: String,
    /// Whether the cancel button shows (actions on, and it can still be cancelled).
    pub can_cancel: bool,
    /// Whether the retry button shows (actions on, and it failed for good).
    pub can_retry: bool,
    /// The CSRF value of the cancel form.
    pub csrf: String,
    /// (event, value) in order.
    pub timeline: Vec<(&'static str, String)>,
    /// Its error, or empty.
    pub error: String,
    /// Its parameters, pretty-printed.
    pub parameters: String,
    /// Its result.
    pub result: ResultView,
    /// The derivation and source row it serves, or empty.
    pub serves: String,
}

impl RequestPage {
    /// The derivation id and source key of the request whose row is `row`, if it serves one.
    pub fn serves(row: &Map<String, Value>) -> Option<(i64, String)> {
        match (row.get("derivation_id"), row.get("source_key")) {
            (Some(Value::Number(d)), Some(key)) if !key.is_null() => {
                d.as_i64().map(|d| (d, key.to_string()))
            }
            _ => None,
        }
    }

    /// The page of the request whose row is `row` (as `to_jsonb` gives it); `target` is the
    /// source table and destination of the derivation it serves, if known.
    pub fn new(
        row: &Map<String, Value>,
        actions: bool,
        csrf: &str,
        target: Option<(String, String)>,
    ) -> Self {
        let text = |k: &str| match row.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        };
        let status = text("status");
        let function = text("function_name");
        let mut timeline = vec![("created", text("created_at"))];
        if status == "pending" && row.get("next_attempt_at") != row.get("created_at") {
            timeline.push(("next attempt not before", text("next_attempt_at")));
        }
        for (label, key) in [
            ("started (last attempt)", "started_at"),
            ("lease until", "lease_expires_at"),
            ("completed or cancelled", "completed_at"),
            ("failed", "failed_at"),
        ] {
            let v = text(key);
            if !v.is_empty() {
                timeline.push((label, v));
            }
        }
        timeline.push((
            "attempts retried",
            format!("{} of {}", text("retry_count"), text("max_retries")),
        ));
        let worker = text("worker_id");
        if !worker.is_empty() {
            timeline.push(("worker", worker));
        }
        let serves = match (Self::serves(row), target) {
            (Some((_, key)), Some((source, destination))) => {
                format!("{destination} of the row of {source} with key {key}")
            }
            (Some((d, key)), None) => format!("derivation {d}, the source row with key {key}"),
            _ => String::new(),
        };
        let parameters = row
            .get("parameters")
            .map(|p| serde_json::to_string_pretty(p).unwrap_or_default())
            .unwrap_or_default();
        let result = row.get("result").and_then(Value::as_str);
        Self {
            page: "requests",
            id: text("request_id"),
            can_cancel: actions && (status == "pending" || status == "processing"),
            can_retry: actions && status == "failed",
            csrf: csrf.to_owned(),
            result: ResultView::of(&function, result),
            function,
            status,
            priority: text("priority"),
            owner: text("owner"),
            timeline,
            error: text("error"),
            parameters,
            serves,
        }
    }
}

/// `/ui/login`.
#[derive(Template)]
#[template(path = "ui/login.html")]
pub struct LoginPage {
    /// Whether the last attempt failed.
    pub failed: bool,
}

/// A page that only says something (not found, no database, an action's outcome).
#[derive(Template)]
#[template(path = "ui/message.html")]
pub struct MessagePage {
    /// The navigation's current page.
    pub page: &'static str,
    /// Its heading.
    pub heading: String,
    /// What it says.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_show_as_text_json_or_an_embedding_summary() {
        assert!(matches!(ResultView::of("generate", None), ResultView::None));
        assert!(
            matches!(ResultView::of("generate", Some("hello")), ResultView::Text(t) if t == "hello")
        );
        match ResultView::of("generate_json", Some(r#"{"a":1}"#)) {
            ResultView::Json(t) => assert_eq!(t, "{\n  \"a\": 1\n}"),
            _ => panic!("json"),
        }
        match ResultView::of("embed", Some("[3,4,0]")) {
            ResultView::Embedding(e) => {
                assert_eq!(e.dimensions, 3);
                assert!((e.norm - 5.0).abs() < 1e-9);
                assert_eq!(e.head, "[3.0000, 4.0000, 0.0000, …]");
            }
            _ => panic!("embedding"),
        }
    }

    #[test]
    fn user_text_is_escaped() {
        let page = MessagePage {
            page: "",
            heading: "<b>h</b>".into(),
            message: "<script>alert(1)</script>".into(),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert") && !html.contains("<b>h"), "{html}");
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{html}");
        assert!(html.contains("&#60;b&#62;h&#60;/b&#62;"), "{html}");
    }

    #[test]
    fn the_chart_has_every_minute_of_the_hour() {
        use super::super::data::Minute;
        let m = |at, completed| Minute { at, completed, failed: 1, cancelled: 0, enqueued: 5 };
        let now = 1_800_000_030; // 30 s into a minute
        let series: serde_json::Value =
            serde_json::from_str(&chart_series(&[m(1_800_000_000, 7), m(1_799_996_460, 2)], now))
                .unwrap();
        let xs = series[0].as_array().unwrap();
        assert_eq!(xs.len(), 60);
        assert_eq!(xs[59], 1_800_000_000);
        assert_eq!(xs[0], 1_800_000_000 - 59 * 60);
        assert_eq!(series[1][59], 5, "enqueued");
        assert_eq!(series[2][59], 7);
        assert_eq!(series[2][0], 2);
        assert_eq!(series[2].as_array().unwrap().iter().filter(|v| **v != 0).count(), 2);
        assert_eq!(series[3][30], 0);
    }

    #[test]
    fn minutes_are_labelled_in_utc() {
        assert_eq!(minute_label(0), "00:00 UTC");
        assert_eq!(minute_label(86_400 + 3600 * 13 + 60 * 7), "13:07 UTC");
        assert_eq!(time_label(86_400 + 3600 * 13 + 60 * 7 + 9), "13:07:09 UTC");
    }
}
