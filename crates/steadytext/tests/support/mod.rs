//! Test support shared by the integration tests.

#![allow(dead_code)] // each test target uses a different part

pub mod cluster;
pub mod daemon;
pub mod generated_tables;
