//! camrig-controller: the Control Pi service (being built in issue 3).
