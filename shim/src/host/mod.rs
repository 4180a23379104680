//! The host side: what the node gives a container — its bundle, rootfs and
//! entrypoint file, image content from containerd, cgroups, network
//! namespace and stdio — and the shim process's own idle trim.

pub mod bundle;
pub mod cgroups;
pub mod content;
pub mod entrypoint;
pub mod netns;
pub mod stdio;
pub mod trim;
