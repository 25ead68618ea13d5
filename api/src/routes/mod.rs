//! The HTTP routes, one module per resource.

pub mod machine_tokens;
pub mod oauth;
pub mod orgs;
pub mod projects;
pub mod service_credentials;
pub mod signing_keys;
