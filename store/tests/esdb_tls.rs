//! The rustls caveat, in a process of its own (the installed crypto provider is process-wide):
//! once something else installed a provider, the `eventstore` client cannot start, and opening
//! says so instead of panicking or handing out a dead client.
#![cfg(feature = "eventstoredb")]

use credledger_store::StoreError;

#[tokio::test]
async fn a_crypto_provider_installed_by_someone_else_is_refused_with_a_reason() {
    rustls::crypto::aws_lc_rs::default_provider().install_default().unwrap();
    match credledger_store::open("esdb://127.0.0.1:1?tls=false").await {
        Err(StoreError::EventStoreDb(message)) => assert!(message.contains("CryptoProvider"), "{message}"),
        other => panic!("expected the provider to be refused, got {other:?}"),
    }
}
