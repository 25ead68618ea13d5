//! The client subcommands, one module per resource.

pub mod session;
pub mod token;
