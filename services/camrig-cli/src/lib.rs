//! camrig CLI (being built in issue 3).
