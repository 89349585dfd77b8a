//! gRPC with tonic (to be written).
