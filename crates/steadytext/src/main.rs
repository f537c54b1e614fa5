//! The `steadytext` binary: daemon, queue worker and command-line access to the engine.

mod bench_cmd;
mod cli;
mod constrained_cmd;
mod embed_cmd;
mod generate_cmd;
mod models_cmd;

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
        },
        cli::Command::Bench(args) => bench_cmd::run(&args),
        cli::Command::Version => {
            println!("steadytext {}", steadytext_api::api_version());
            Ok(())
        }
    }
}
