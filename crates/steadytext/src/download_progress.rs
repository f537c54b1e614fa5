//! How `steadytext models fetch` shows a download's progress on stderr: one line rewritten in
//! place on a terminal, a plain line now and then otherwise (logs, CI), bytes, total and rate in
//! both.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use steadytext_core::download::{Progress, ProgressSink};

/// How download progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressStyle {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// One line rewritten in place.
    Bar,
    /// A plain line at the start, every [`LINE_INTERVAL`], and at the end.
    Lines,
    /// Nothing.
    Off,
}

/// Shortest time between two redraws of the bar.
const BAR_INTERVAL: Duration = Duration::from_millis(200);
/// Time between two plain lines while bytes arrive.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// Renders the progress of downloading one model.
pub struct ProgressDisplay<W: Write> {
    name: String,
    style: ProgressStyle,
    out: W,
    /// When the first report arrived, and the bytes it counted (the rate counts only bytes
    /// downloaded by this run, not a resumed `.part` file).
    start: Option<(Instant, u64)>,
    /// The latest report, and whether it is on screen.
    latest: Option<Progress>,
    shown: bool,
    /// When the bar or a line was last written.
    last_write: Option<Instant>,
    /// The bar's line is open (no newline after it yet).
    bar_open: bool,
}

impl ProgressDisplay<std::io::Stderr> {
    /// A display of the download of `name` on stderr; [`ProgressStyle::Auto`] is a bar when
    /// stderr is a terminal and lines otherwise.
    pub fn stderr(name: &str, style: ProgressStyle) -> Self {
        let stderr = std::io::stderr();
        let style = match style {
            ProgressStyle::Auto if stderr.is_terminal() => ProgressStyle::Bar,
            ProgressStyle::Auto => ProgressStyle::Lines,
            other => other,
        };
        Self::new(name, style, stderr)
    }
}

impl<W: Write> ProgressDisplay<W> {
    /// A display of the download of `name` in `style` (not [`ProgressStyle::Auto`]) on `out`.
    pub fn new(name: &str, style: ProgressStyle, out: W) -> Self {
        Self {
            name: name.into(),
            style,
            out,
            start: None,
            latest: None,
            shown: false,
            last_write: None,
            bar_open: false,
        }
    }

    /// Ends the display once the download is over: the last state if it was not shown yet,
    /// and the bar's line closed.
    pub fn finish(&mut self) {
        if !self.shown {
            if let Some(p) = self.latest {
                self.show(p, Instant::now());
            }
        }
        if self.bar_open {
            let _ = writeln!(self.out);
            self.bar_open = false;
        }
        let _ = self.out.flush();
    }

    /// The line describing `p`: bytes, total and percentage when known, and the rate since
    /// the first report.
    fn describe(&self, p: Progress, now: Instant) -> String {
        let human = self.style == ProgressStyle::Bar;
        let size = |n: u64| if human { human_bytes(n) } else { n.to_string() };
        let mut line = format!("{}: {}", self.name, size(p.done));
        match p.total {
            Some(total) => {
                let percent = if total == 0 { 100.0 } else { p.done as f64 * 100.0 / total as f64 };
                line += &format!(" of {}", size(total));
                if !human {
                    line += " bytes";
                }
                line += &format!(" ({percent:.1}%)");
            }
            None if !human => line += " bytes",
            None => {}
        }
        if let Some((at, from)) = self.start {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 && p.done > from {
                line += &format!(", {}/s", human_bytes(((p.done - from) as f64 / secs) as u64));
            }
        }
        line
    }

    fn show(&mut self, p: Progress, now: Instant) {
        let line = self.describe(p, now);
        let _ = match self.style {
            ProgressStyle::Bar => {
                self.bar_open = true;
                write!(self.out, "\r{line}\x1b[K")
            }
            ProgressStyle::Lines => writeln!(self.out, "{line}"),
            ProgressStyle::Auto | ProgressStyle::Off => return,
        };
        let _ = self.out.flush();
        self.shown = true;
        self.last_write = Some(now);
    }
}

impl<W: Write> ProgressSink for ProgressDisplay<W> {
    fn received(&mut self, progress: Progress) {
        let now = Instant::now();
        let first = self.start.is_none();
        if first {
            self.start = Some((now, progress.done));
        }
        self.latest = Some(progress);
        self.shown = false;
        let interval = match self.style {
            ProgressStyle::Bar => BAR_INTERVAL,
            ProgressStyle::Lines => LINE_INTERVAL,
            ProgressStyle::Auto | ProgressStyle::Off => return,
        };
        let complete = progress.total == Some(progress.done);
        let due = self.last_write.is_none_or(|at| now.duration_since(at) >= interval);
        if first || complete || due {
            self.show(progress, now);
        }
    }

    fn verifying(&mut self) {
        self.finish();
        if self.style != ProgressStyle::Off {
            let _ = writeln!(self.out, "{}: checking sha256", self.name);
        }
    }
}

/// `n` bytes in decimal units with three significant digits (`52.4 MB`).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 999.5 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if value >= 99.95 => format!("{value:.0} {}", UNITS[unit]),
        _ if value >= 9.995 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.2} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_keep_three_significant_digits() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_000), "1.00 kB");
        assert_eq!(human_bytes(52_400_000), "52.4 MB");
        assert_eq!(human_bytes(253_000_000), "253 MB");
        assert_eq!(human_bytes(4_280_000_000), "4.28 GB");
    }

    #[test]
    fn lines_show_the_start_the_end_and_nothing_in_between_within_the_interval() {
        let mut out = Vec::new();
        let mut d = ProgressDisplay::new("m", ProgressStyle::Lines, &mut out);
        for done in [0, 10, 20, 30] {
            d.received(Progress { done, total: Some(30) });
        }
        d.finish();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "m: 0 of 30 bytes (0.0%)");
        assert!(lines[1].starts_with("m: 30 of 30 bytes (100.0%), "), "{text}");
        assert!(lines[1].ends_with("B/s"), "{text}");
    }

    #[test]
    fn an_unknown_total_is_left_out_and_finish_shows_the_last_state() {
        let mut out = Vec::new();
        let mut d = ProgressDisplay::new("m", ProgressStyle::Lines, &mut out);
        d.received(Progress { done: 0, total: None });
        d.received(Progress { done: 5, total: None });
        d.finish();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "m: 0 bytes");
        assert!(lines[1].starts_with("m: 5 bytes"), "{text}");
    }

    #[test]
    fn the_bar_rewrites_one_line_and_closes_it() {
        let mut out = Vec::new();
        let mut d = ProgressDisplay::new("m", ProgressStyle::Bar, &mut out);
        d.received(Progress { done: 0, total: Some(2_000_000) });
        d.received(Progress { done: 2_000_000, total: Some(2_000_000) });
        d.finish();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("\rm: 0 B of 2.00 MB (0.0%)\x1b[K\rm: 2.00 MB of 2.00 MB (100.0%)"),
            "{text:?}"
        );
        assert!(text.ends_with("\x1b[K\n"), "{text:?}");
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
    }

    #[test]
    fn off_writes_nothing() {
        let mut out = Vec::new();
        let mut d = ProgressDisplay::new("m", ProgressStyle::Off, &mut out);
        d.received(Progress { done: 0, total: Some(1) });
        d.verifying();
        d.finish();
        assert!(out.is_empty());
    }
}
