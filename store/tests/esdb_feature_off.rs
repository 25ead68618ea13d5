//! A build without the `eventstoredb` feature names the feature instead of the scheme.
#![cfg(not(feature = "eventstoredb"))]

use credledger_store::StoreError;

#[tokio::test]
async fn an_esdb_url_asks_for_the_feature() {
    for url in ["esdb://admin:hunter2@localhost:2113?tls=false", "esdb+discover://cluster", "kurrentdb://localhost"] {
        match credledger_store::open(url).await {
            Err(StoreError::UnsupportedUrl(message)) => {
                assert!(message.contains("--features eventstoredb"), "{message}");
                assert!(!message.contains("hunter2"), "{message}");
            }
            other => panic!("{url}: expected UnsupportedUrl, got {other:?}"),
        }
    }
}
