//! Types shared by the `steadytext` daemon and the `pg_steadytext` extension.
//!
//! This crate stays dependency-light (serde, and regex-syntax for pattern validation) because
//! the PostgreSQL extension links it.

pub mod client;
pub mod function;
pub mod json_schema;
pub mod limits;
pub mod metric_names;
pub mod model_dir;
pub mod notifications;
pub mod queue_request;
pub mod ready;
pub mod settings;
pub mod validate;
pub mod vector_text;
pub mod version;
pub mod wire;

pub use version::{api_version, VERSION};
