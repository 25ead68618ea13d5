//! The client subcommands, one module per resource.

pub mod audit;
pub mod audit_log;
pub mod audit_verify;
pub mod completions;
pub mod dashboard;
pub mod machine;
pub mod member;
pub mod org;
pub mod pat;
pub mod project;
pub mod secrets;
pub mod service_credential;
pub mod session;
pub mod token;
