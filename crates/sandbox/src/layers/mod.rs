//! The layers, each applied by the helper in order: namespaces ([`ns`]), limits ([`limits`]),
//! the filesystem allow-list ([`fs`], Landlock), the system-call filter ([`seccomp`]).

pub mod fs;
pub mod limits;
pub mod ns;
pub mod seccomp;
