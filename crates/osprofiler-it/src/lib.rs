//! Tests only: the integrations of `osprofiler` (HTTP server layer, HTTP client, gRPC,
//! `tracing` bridge, SQL) against real servers, clients and databases, and against the
//! real Python osprofiler 4.4.0. See `tests/`.

/// The workspace README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct WorkspaceReadme;
