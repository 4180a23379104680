//! The host side: what the node gives a container — its bundle and rootfs
//! (the entrypoint in it is found and classified by `shim_input::entrypoint`),
//! image content from containerd, cgroups, network namespace, name lookups,
//! stdio and terminals — and the shim process's own idle trim.

pub mod bundle;
pub mod cgroups;
pub mod console;
pub mod content;
pub mod dns;
pub mod netns;
pub mod stdio;
pub mod trim;
