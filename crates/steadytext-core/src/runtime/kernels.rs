//! The ggml CPU kernel choices that llama.cpp reads from the environment, pinned for
//! determinism before the backend starts.
//!
//! ggml's tiled K-quant matrix product (`ggml-cpu/tiled`) takes over the Q4_K/Q6_K weights once
//! a product has 8 or more rows (`GGML_CPU_TILED_MM`, on by default; `GGML_CPU_TILED_MM_FORCE`
//! takes it for any row count). Its sums are grouped differently from the `vec_dot` kernel used
//! below 8 rows, so a sequence decoded next to 7 others got different logits than alone
//! (measured: one of 8 outputs changed). Turned off, every Q4_K/Q6_K product element is one
//! `vec_dot` of the same row and column whatever the batch. The build-time kernel choices are in
//! `.cargo/config.toml`.

/// Environment variables set for ggml, with the value each must have.
pub const PINNED: [(&str, &str); 2] =
    [("GGML_CPU_TILED_MM", "0"), ("GGML_CPU_TILED_MM_FORCE", "0")];

/// Sets [`PINNED`] in this process's environment, overriding what the caller set. ggml reads
/// them once, at its first matrix product, so this must run before any model computes; it runs
/// when the llama.cpp backend is initialised ([`crate::backend::backend`]), and a binary may call
/// it earlier, before it starts threads.
pub fn pin() {
    for (name, value) in PINNED {
        if std::env::var(name).as_deref() != Ok(value) {
            // Rust's own environment accesses are serialised by std; the only other readers in
            // this process are llama.cpp's, which run after the backend is initialised here.
            std::env::set_var(name, value);
        }
    }
}
