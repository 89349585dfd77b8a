//! Signed trace headers in an `http::HeaderMap` (to be written).
