//! camrig-node: the recording service on every camera Pi (being built in issue 2).
