//! The domain stays pure: no IO, async, SQL or HTTP crate may enter its dependencies.

#[test]
fn domain_depends_on_no_runtime_database_or_http_crate() {
    let manifest = include_str!("../Cargo.toml");
    let forbidden = ["tokio", "sqlx", "rusqlite", "axum", "hyper", "reqwest", "async-std", "futures"];
    for line in manifest.lines() {
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default().trim();
        assert!(!forbidden.contains(&name), "domain/Cargo.toml depends on `{name}`");
    }
}
