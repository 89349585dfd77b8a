//! Carrying the signed trace context over any string map (to be written).
