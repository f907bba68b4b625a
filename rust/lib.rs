//! `dar._core`: RFC 8785 canonical JSON and SHA-256 input hashing.
//!
//! The canonicalizer (`canonical`, `text`, `error`) is plain Rust, tested with
//! `cargo test --no-default-features`; the `python` feature adds the thin PyO3 layer.

pub mod canonical;
pub mod error;
pub mod text;
mod text_checked;

#[cfg(any(test, feature = "reference"))]
pub mod reference;

#[cfg(feature = "python")]
mod binding;
#[cfg(feature = "python")]
mod objects;
#[cfg(feature = "python")]
mod pipeline;
#[cfg(feature = "python")]
mod pool;
#[cfg(feature = "python")]
mod shapes;
#[cfg(feature = "python")]
mod walk;
