//! Test support shared by the integration tests.

#![allow(dead_code, unused_imports)] // each test target uses a different part

pub use steadytext_testkit::cluster;
pub mod daemon;
pub mod generated_tables;
