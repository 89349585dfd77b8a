//! The reqwest-middleware client middleware (to be written).
