//! The rig benchmark's measurements (filled in once node and controller exist).
