//! osprofiler for Rust.
pub mod id;
pub mod json;
pub mod time;
