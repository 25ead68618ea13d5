//! The follower: a catch-up subscription to the ledger stream that brings every commit, this
//! node's and other nodes', into the index and the published head.
//!
//! This node's own commits usually reach the index through the writer first; the follower then
//! only confirms them. Events from elsewhere reach it only here, so `head()`, subscriptions and
//! admission see them within a subscription round-trip. When the subscription drops (server
//! restart, network), it resubscribes from the index's head after a pause.

use std::sync::Arc;
use std::time::Duration;

use eventstore::{StreamPosition, SubscribeToStreamOptions};
use tokio::sync::watch;

use super::Shared;
use super::index::Entry;

/// The pause before resubscribing after the subscription failed.
const RETRY: Duration = Duration::from_secs(1);

/// Follows the ledger stream until `stop` changes or its sender is dropped (the store closed or
/// dropped).
pub(super) async fn follow(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let head = shared.index().head();
        // A subscription starts *after* the revision it is given; revision head - 1 is the
        // index's last event.
        let start = match head {
            0 => StreamPosition::Start,
            head => StreamPosition::Position(head - 1),
        };
        let options = SubscribeToStreamOptions::default().start_from(start);
        let client = shared.connection.client();
        let mut subscription = client.subscribe_to_stream(shared.connection.ledger.as_str(), &options).await;
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                next = subscription.next() => next,
            };
            let event = match next {
                Ok(resolved) => resolved.event.or(resolved.link),
                Err(error) => {
                    let error = shared.connection.failed(error);
                    tracing::warn!(%error, "the EventStoreDB ledger subscription dropped; resubscribing");
                    break;
                }
            };
            let Some(event) = event else { continue };
            let position = event.revision + 1;
            let moved = {
                let mut index = shared.index();
                if index.damage().is_some() {
                    // A damaged index follows no more; reads still work, appends are refused.
                    return;
                }
                if position > index.head() + 1 {
                    // Missed events (they should not be): read them instead.
                    None
                } else {
                    match Entry::from_stored(&event) {
                        Ok(entry) => Some(index.apply(entry).then(|| index.head())),
                        Err(error) => {
                            index.mark_damaged(position, &error.to_string());
                            return;
                        }
                    }
                }
            };
            match moved {
                Some(Some(head)) => shared.publish(head),
                Some(None) => {}
                None => {
                    if let Err(error) = shared.catch_up().await {
                        tracing::warn!(%error, "catching up with the EventStoreDB ledger stream");
                        break;
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}
