//! The EventStoreDB client, its TLS start-up, and reads of the ledger stream.

use std::sync::{Mutex, OnceLock};

use eventstore::{Client, ClientSettings, ReadStreamOptions, StreamPosition};

use crate::StoreError;

/// Holds the client and replaces it when it has died: the `eventstore` crate's connection task
/// ends for good after a failed node discovery (the server was unreachable for a few seconds),
/// and every later call on that client answers `ConnectionClosed`.
pub(super) struct Connection {
    settings: ClientSettings,
    client: Mutex<Client>,
    /// The EventStoreDB stream holding the ledger.
    pub ledger: String,
}

impl Connection {
    /// Starts a client; needs a tokio runtime, whose tasks then carry the connection.
    pub(super) fn new(settings: ClientSettings, ledger: String) -> Result<Self, StoreError> {
        check_tls_provider()?;
        let client = Client::new(settings.clone()).map_err(from_client)?;
        Ok(Self { settings, client: Mutex::new(client), ledger })
    }

    /// The current client (a cheap handle).
    pub(super) fn client(&self) -> Client {
        self.client.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Turns a client error into the store's, starting a fresh client when this one is dead.
    pub(super) fn failed(&self, error: eventstore::Error) -> StoreError {
        if matches!(error, eventstore::Error::ConnectionClosed | eventstore::Error::GrpcConnectionError(_)) {
            match Client::new(self.settings.clone()) {
                Ok(client) => *self.client.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = client,
                Err(error) => tracing::warn!(%error, "restarting the EventStoreDB client"),
            }
        }
        from_client(error)
    }

    /// At most `limit` events of the ledger stream from `from_revision` on, in order. A ledger
    /// stream that does not exist yet has no events.
    pub(super) async fn read(
        &self,
        from_revision: u64,
        limit: usize,
    ) -> Result<Vec<eventstore::RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let options =
            ReadStreamOptions::default().forwards().position(StreamPosition::Position(from_revision)).max_count(limit);
        let mut stream = match self.client().read_stream(self.ledger.as_str(), &options).await {
            Ok(stream) => stream,
            Err(eventstore::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(error) => return Err(self.failed(error)),
        };
        let mut events = Vec::new();
        loop {
            match stream.next().await {
                Ok(Some(resolved)) => {
                    // Links are not resolved, so every read event is the event itself.
                    let event = resolved.event.or(resolved.link).ok_or_else(|| {
                        StoreError::EventStoreDb("a read of the ledger stream returned an empty event".to_owned())
                    })?;
                    events.push(event);
                }
                Ok(None) | Err(eventstore::Error::ResourceNotFound) => return Ok(events),
                Err(error) => return Err(self.failed(error)),
            }
        }
    }
}

pub(super) fn from_client(error: eventstore::Error) -> StoreError {
    match error {
        // What a client whose connection task is gone answers. Besides an earlier failed
        // discovery, the crate's task panics (see the log) when it cannot load the platform's CA
        // certificates or the URL's `tlsCAFile`, even for `tls=false`.
        eventstore::Error::ConnectionClosed => StoreError::EventStoreDb(
            "the client's connection task stopped: the server was unreachable, or the client could not \
             start (unreadable platform CA certificates or tlsCAFile; see the log)"
                .to_owned(),
        ),
        error => StoreError::EventStoreDb(error.to_string()),
    }
}

/// The rustls caveat. `eventstore` 4.0.0 starts each client's connection task with
/// `rustls::crypto::aws_lc_rs::default_provider().install_default().expect(..)`, once per
/// process. `install_default` fails when any process-wide `CryptoProvider` is already installed,
/// so that task panics if someone else installed one first, even the same aws-lc-rs provider;
/// the panic stays inside the task, but the client is dead and every call fails with
/// "connection is closed". Installing a provider ourselves before the client (the usual fix for
/// rustls's "no process-level CryptoProvider" panic) is therefore exactly what would break it,
/// and rustls cannot fail to choose one either, since the crate installs its own explicitly.
///
/// So credledger installs no provider (it has no other TLS user: reqwest is built without TLS,
/// and with this feature reqwest's rustls only uses an installed provider or its own ring one,
/// installing none), and before the first client of the process starts, we check that nobody
/// else did. If someone did, opening refuses with an explanation instead of starting a client
/// that cannot work. After the first client, the installed provider is the crate's own.
fn check_tls_provider() -> Result<(), StoreError> {
    static CLEAR_AT_FIRST_CLIENT: OnceLock<bool> = OnceLock::new();
    let clear = *CLEAR_AT_FIRST_CLIENT.get_or_init(|| rustls::crypto::CryptoProvider::get_default().is_none());
    if clear {
        Ok(())
    } else {
        Err(StoreError::EventStoreDb(
            "a rustls CryptoProvider was installed in this process before the EventStoreDB client started; \
             the eventstore client installs its own and cannot start after another"
                .to_owned(),
        ))
    }
}
