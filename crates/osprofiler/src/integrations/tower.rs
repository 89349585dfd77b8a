//! The tower server layer (to be written).
