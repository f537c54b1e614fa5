//! The `steadytext` binary: daemon, queue worker and command-line access to the engine.

mod cache;
mod cli;
mod commands;
mod db_session;
mod download_progress;
mod engine_host;
mod error;
mod http;
mod metrics;
mod queue_sql;
mod readiness;
mod service;
mod shared_cache;
mod ui;
mod worker;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Generate(args) => commands::generate::run(&args),
        cli::Command::GenerateJson(args) => commands::constrained::run_json(&args),
        cli::Command::GenerateRegex(args) => commands::constrained::run_regex(&args),
        cli::Command::GenerateChoice(args) => commands::constrained::run_choice(&args),
        cli::Command::Embed(args) => commands::embed::run(&args),
        cli::Command::Models(args) => match args.command {
            cli::ModelsCommand::Import(args) => commands::models::import(&args),
            cli::ModelsCommand::List(args) => commands::models::list(&args),
            cli::ModelsCommand::Fetch(args) => commands::models::fetch(&args),
        },
        cli::Command::Rerank(args) => commands::rerank::run(&args),
        cli::Command::Bench(args) => commands::bench::run(&args),
        cli::Command::Serve(args) => Ok(commands::serve::serve(args)?),
        cli::Command::Worker(args) => Ok(commands::serve::worker(args)?),
        cli::Command::Reference(args) => Ok(commands::reference::run(&args)?),
        cli::Command::Version => {
            println!("steadytext {}", steadytext_api::api_version());
            Ok(())
        }
    }
}
