//! `steadytext reference flags` (hidden): the README's table of the `serve` and `worker` flags,
//! rendered from their clap declarations so that the documentation cannot drift from the code.

use std::io::Write;

use clap::{Arg, ArgAction, CommandFactory};

use crate::cli::{Cli, ReferenceArgs, ReferenceCommand};
use crate::error::DaemonError;

/// The commands whose flags the table lists, in column order.
pub const DAEMON_COMMANDS: [&str; 2] = ["serve", "worker"];

/// Runs `steadytext reference …`: prints the requested table to stdout.
pub fn run(args: &ReferenceArgs) -> Result<(), DaemonError> {
    let table = match args.command {
        ReferenceCommand::Flags => flags_table(),
    };
    std::io::stdout().lock().write_all(table.as_bytes())?;
    Ok(())
}

/// One flag of `serve` and/or `worker`, as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRow {
    /// The long name, without `--`.
    pub long: String,
    /// Its environment variable, if any.
    pub env: Option<String>,
    /// The default: clap's (in backticks; `off` for a switch), else the doc comment's `Default:`.
    pub default: String,
    /// The help text without its `Default:` sentence.
    pub meaning: String,
    /// The commands (of [`DAEMON_COMMANDS`]) that accept the flag.
    pub commands: Vec<&'static str>,
}

/// The rows of every flag of `serve` and `worker`: `serve`'s in declaration order, then those
/// only `worker` has.
pub fn flag_rows() -> Vec<FlagRow> {
    let mut cli = Cli::command();
    cli.build();
    let mut rows: Vec<FlagRow> = Vec::new();
    for name in DAEMON_COMMANDS {
        let command = cli.find_subcommand(name).expect("serve and worker are subcommands");
        for arg in command.get_arguments().filter(|a| is_documented_flag(a)) {
            let long = arg.get_long().expect("filtered on long flags").to_owned();
            if let Some(row) = rows.iter_mut().find(|r| r.long == long) {
                row.commands.push(name);
                continue;
            }
            let help = help_text(arg);
            let (meaning, stated) = split_default(&help);
            rows.push(FlagRow {
                long,
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                default: clap_default(arg).or(stated).unwrap_or_default(),
                meaning,
                commands: vec![name],
            });
        }
    }
    rows
}

/// The markdown table of [`flag_rows`]: flag | env | default | meaning | accepted by.
pub fn flags_table() -> String {
    let mut out =
        String::from("| flag | env | default | meaning | accepted by |\n|---|---|---|---|---|\n");
    for row in flag_rows() {
        let env = row.env.as_deref().map(|e| format!("`{e}`")).unwrap_or_default();
        out.push_str(&format!(
            "| `--{}` | {env} | {} | {} | {} |\n",
            row.long,
            cell(&row.default),
            cell(&row.meaning),
            row.commands.join(", ")
        ));
    }
    out
}

/// Whether `arg` is a visible `--long` flag of its own (not clap's `--help` / `--version`).
fn is_documented_flag(arg: &Arg) -> bool {
    arg.get_long().is_some()
        && !arg.is_hide_set()
        && !matches!(arg.get_action(), ArgAction::Help | ArgAction::HelpLong | ArgAction::Version)
}

/// The flag's help as one line (the long help if it has one).
fn help_text(arg: &Arg) -> String {
    let help = arg.get_long_help().or(arg.get_help()).map(ToString::to_string).unwrap_or_default();
    help.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits help text at its last `Default:` into the meaning before it and the stated default.
pub fn split_default(help: &str) -> (String, Option<String>) {
    match help.rfind("Default:") {
        Some(at) => {
            let stated = help[at + "Default:".len()..].trim().trim_end_matches('.').to_owned();
            (help[..at].trim().to_owned(), Some(stated))
        }
        None => (help.trim().to_owned(), None),
    }
}

/// The default as clap knows it: the value in backticks, or `off`/`on` for a switch.
pub fn clap_default(arg: &Arg) -> Option<String> {
    let values: Vec<String> =
        arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if values.is_empty() {
        return None;
    }
    let value = values.join(",");
    if arg.get_action().takes_values() {
        Some(format!("`{value}`"))
    } else {
        Some(if value == "false" { "off" } else { "on" }.to_owned())
    }
}

/// Text made safe for one markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_table_has_every_serve_and_worker_flag_with_its_env_var() {
        let table = flags_table();
        let mut cli = Cli::command();
        cli.build();
        let mut seen = 0;
        for name in DAEMON_COMMANDS {
            let command = cli.find_subcommand(name).unwrap();
            for arg in command.get_arguments().filter(|a| is_documented_flag(a)) {
                let long = arg.get_long().unwrap();
                let env = arg.get_env().unwrap_or_else(|| panic!("--{long} has no env var"));
                let prefix = format!("| `--{long}` | `{}` | ", env.to_string_lossy());
                let row = table
                    .lines()
                    .find(|l| l.starts_with(&prefix))
                    .unwrap_or_else(|| panic!("no row {prefix}… in\n{table}"));
                assert!(row.trim_end_matches(" |").rsplit("| ").next().unwrap().contains(name));
                seen += 1;
            }
        }
        assert!(seen > 30, "{seen} flags of serve and worker");
        for row in flag_rows() {
            assert!(!row.default.is_empty(), "--{}: no default", row.long);
            assert!(!row.meaning.is_empty(), "--{}: no meaning", row.long);
        }
    }

    /// The worker flags' help states the range, default and GUC of the shared declaration.
    #[test]
    fn worker_flags_state_their_shared_range_and_default() {
        let rows = flag_rows();
        for setting in steadytext_api::settings::ALL {
            let row = rows.iter().find(|r| r.long == setting.flag).expect("a worker flag");
            assert_eq!(row.env.as_deref(), Some(setting.env));
            let range = format!("({}–{})", setting.min, setting.max);
            assert!(row.meaning.contains(&range), "--{}: {range} in {:?}", row.long, row.meaning);
            let default = format!("the GUC `{}`, else {}", setting.guc_name(), setting.default);
            assert!(
                row.default.contains(&default),
                "--{}: {default} in {:?}",
                row.long,
                row.default
            );
        }
    }

    #[test]
    fn a_stated_default_agrees_with_clap() {
        let mut cli = Cli::command();
        cli.build();
        for name in DAEMON_COMMANDS {
            let command = cli.find_subcommand(name).unwrap();
            for arg in command.get_arguments().filter(|a| is_documented_flag(a)) {
                let (_, stated) = split_default(&help_text(arg));
                let long = arg.get_long().unwrap();
                let stated = stated.unwrap_or_else(|| panic!("--{long} states no default"));
                if let Some(clap) = clap_default(arg) {
                    assert_eq!(stated.trim_matches('`'), clap.trim_matches('`'), "--{long}");
                }
            }
        }
    }

    #[test]
    fn help_text_splits_at_its_default() {
        assert_eq!(
            split_default("Port (0 picks one). Default: 8765"),
            ("Port (0 picks one).".to_owned(), Some("8765".to_owned()))
        );
        assert_eq!(split_default("No default here"), ("No default here".to_owned(), None));
        assert_eq!(cell("a | b"), "a \\| b");
    }
}
