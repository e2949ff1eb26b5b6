//! Kassa storage (being written).
