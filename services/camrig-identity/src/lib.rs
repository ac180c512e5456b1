//! Per-card identity (being built in issue 5).
