//! The `steadytext` binary: daemon, queue worker and command-line access to the engine.

mod cli;
mod generate_cmd;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Generate(args) => generate_cmd::run(&args),
        cli::Command::Version => {
            println!("steadytext {}", steadytext_api::api_version());
            Ok(())
        }
    }
}
