//! Kassa HTTP (being written).
