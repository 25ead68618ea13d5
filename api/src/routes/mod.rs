//! The HTTP routes, one module per resource.

pub mod machine_tokens;
pub mod orgs;
pub mod projects;
