//! X.509 (coming)
