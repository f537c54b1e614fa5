//! The llama.cpp runtime as the engine uses it: backend initialisation and model loading, the
//! pinned CPU kernels, and the thread policy.

pub mod backend;
pub mod kernels;
pub mod threads;
