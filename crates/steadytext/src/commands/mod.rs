//! One module per `steadytext` subcommand.

pub mod bench;
pub mod constrained;
pub mod embed;
pub mod generate;
pub mod models;
pub mod reference;
pub mod rerank;
pub mod serve;
