//! Placeholder until the messaging benchmark lands (see BENCHMARKS.md).
fn main() {}
