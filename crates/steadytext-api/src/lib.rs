//! Types shared by the `steadytext` daemon and the `pg_steadytext` extension.
//!
//! This crate stays dependency-light (serde only) because the PostgreSQL extension links it.

pub mod limits;
pub mod version;

pub use version::{api_version, VERSION};
