//! The HTTP routes, one module per resource.

mod assertion;
pub mod machine_tokens;
pub mod machines;
pub mod oauth;
pub mod orgs;
pub mod projects;
pub mod service_credentials;
pub mod signing_keys;
pub mod whoami;
