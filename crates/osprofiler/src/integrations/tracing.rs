//! The tracing-subscriber Layer and SQL statements (to be written).
