//! camrig's configuration schema, in one place: the node's `node.toml` ([`node`]) and the
//! controller's `controller.toml` ([`controller`]). Each is a serde type with its validation
//! (errors name the key). The services parse them; the demo, the virtual rig and the other
//! tools that write a config build these values and serialise them, so a new setting is added
//! here once and every reader and writer has it.

pub mod controller;
pub mod node;
