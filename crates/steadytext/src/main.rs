//! The `steadytext` binary: daemon, queue worker and command-line access to the engine.

mod bench_cmd;
mod cache;
mod cli;
mod constrained_cmd;
mod db_config;
mod embed_cmd;
mod engine_host;
mod error;
mod generate_cmd;
mod job;
mod metrics;
mod models_cmd;
mod openai;
mod reference_cmd;
mod rerank_cmd;
mod serve_cmd;
mod server;
mod service;
mod worker;
mod worker_settings;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Generate(args) => generate_cmd::run(&args),
        cli::Command::GenerateJson(args) => constrained_cmd::run_json(&args),
        cli::Command::GenerateRegex(args) => constrained_cmd::run_regex(&args),
        cli::Command::GenerateChoice(args) => constrained_cmd::run_choice(&args),
        cli::Command::Embed(args) => embed_cmd::run(&args),
        cli::Command::Models(args) => match args.command {
            cli::ModelsCommand::Import(args) => models_cmd::import(&args),
            cli::ModelsCommand::List(args) => models_cmd::list(&args),
            cli::ModelsCommand::Fetch(args) => models_cmd::fetch(&args),
        },
        cli::Command::Rerank(args) => rerank_cmd::run(&args),
        cli::Command::Bench(args) => bench_cmd::run(&args),
        cli::Command::Serve(args) => Ok(serve_cmd::serve(args)?),
        cli::Command::Worker(args) => Ok(serve_cmd::worker(args)?),
        cli::Command::Reference(args) => Ok(reference_cmd::run(&args)?),
        cli::Command::Version => {
            println!("steadytext {}", steadytext_api::api_version());
            Ok(())
        }
    }
}
