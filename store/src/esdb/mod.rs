//! The EventStoreDB/KurrentDB backend: the whole log is ONE EventStoreDB stream, the ledger
//! stream (`credledger-ledger` unless the URL says `ledger=NAME`).
//!
//! A ledger position is that stream's revision + 1, so positions are gap-free and in commit
//! order for free, and every append is one `append_to_stream` with the expected revision the
//! writer computed its positions from: if another node appended first, EventStoreDB refuses it
//! and the writer catches up and judges again. Each EventStoreDB event carries the credledger
//! event id as its id, the event type as its type, the exact envelope bytes as its (JSON) data,
//! and the leaf hash, stream, version and organization sequence as its metadata.
//!
//! What one stream cannot answer (credledger stream versions, organization sequences, where an
//! event id sits) comes from an in-memory [`index::Index`] built at open and kept current by the
//! writer and by a follower subscribed to the ledger stream, so appends by other nodes reach
//! `head()`, admission and subscriptions.

mod config;
mod connection;
mod follow;
mod index;
mod writer;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{mpsc, watch};

use crate::{
    AppendResult, Basis, EventStore, ExpectedVersion, NewEvent, RawEvent, RecordedEvent, StoreError, envelope,
};
use connection::Connection;
use index::{Entry, Index, LedgerMetadata};
use writer::{Message, Writer};

/// Appends that may wait for the writer before `append` itself waits.
const QUEUE: usize = 16 * 1024;

/// Events per read while catching up (the index at open, a subscription).
const PAGE: usize = 512;

/// Most concurrent reads serving one `read_stream`.
const READ_STREAM_CONCURRENCY: usize = 8;

/// The log in one EventStoreDB stream. Dropping the last handle lets the writer commit what is
/// queued and stop, and stops the follower.
pub(crate) struct EsdbStore {
    shared: Arc<Shared>,
    appends: mpsc::Sender<Message>,
    head: watch::Receiver<u64>,
    /// Dropped or sent to stop the follower.
    stop: watch::Sender<bool>,
}

impl fmt::Debug for EsdbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsdbStore").field("ledger", &self.shared.connection.ledger).finish_non_exhaustive()
    }
}

/// What the store, its writer, its follower and its subscriptions share.
struct Shared {
    connection: Connection,
    index: Mutex<Index>,
    /// The head publisher; taken and dropped when the writer stops, which ends subscriptions.
    head: Mutex<Option<watch::Sender<u64>>>,
}

impl Shared {
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the index's head after it moved; the head only ever grows.
    fn publish(&self, head: u64) {
        if let Some(sender) = self.head.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            sender.send_if_modified(|published| {
                let moved = head > *published;
                if moved {
                    *published = head;
                }
                moved
            });
        }
    }

    /// Reads the ledger from the index's head until the end and applies what it finds: at open,
    /// after a refused or failed append, and when the follower saw a gap.
    async fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let (head, damaged) = {
                let index = self.index();
                (index.head(), index.damage().is_some())
            };
            if damaged {
                return Ok(());
            }
            let page = self.connection.read(head, PAGE).await?;
            let full = page.len() == PAGE;
            let head = {
                let mut index = self.index();
                for event in &page {
                    match Entry::from_stored(event) {
                        Ok(entry) => {
                            index.apply(entry);
                        }
                        Err(error) => index.mark_damaged(event.revision + 1, &error.to_string()),
                    }
                }
                index.head()
            };
            self.publish(head);
            if !full {
                return Ok(());
            }
        }
    }
}

impl EsdbStore {
    /// Connects, reads the ledger stream to build the index, and starts the writer and the
    /// follower. A ledger stream that does not continue the log opens read-only.
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let config = config::parse(url)?;
        let connection = Connection::new(config.settings, config.ledger)?;
        let shared = Arc::new(Shared { connection, index: Mutex::new(Index::default()), head: Mutex::new(None) });
        shared.catch_up().await?;
        let head = shared.index().head();
        let (head_sender, head_receiver) = watch::channel(head);
        *shared.head.lock().unwrap_or_else(PoisonError::into_inner) = Some(head_sender);
        // Events committed between the catch-up and the publisher's arrival reach the index
        // through the follower, which starts from the index's head.
        let (appends, receiver) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(Writer::new(shared.clone()).run(receiver));
        tokio::spawn(follow::follow(shared.clone(), stopped));
        tracing::debug!(ledger = %shared.connection.ledger, head, "event store opened on EventStoreDB");
        Ok(Self { shared, appends, head: head_receiver, stop })
    }
}

#[async_trait::async_trait]
impl EventStore for EsdbStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        crate::batch::submit(&self.appends, Message::Append, stream, expected, events, None).await
    }

    async fn append_on_basis(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        basis: Basis,
    ) -> Result<AppendResult, StoreError> {
        crate::batch::submit(&self.appends, Message::Append, stream, expected, events, Some(basis)).await
    }

    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        crate::check_stream_name(stream)?;
        let positions = self.shared.index().positions(stream, from_version);
        // Consecutive positions are read together: a lifecycle stream's events often are.
        let mut runs: Vec<(u64, usize)> = Vec::new();
        for position in positions {
            match runs.last_mut() {
                Some((first, count)) if *first + *count as u64 == position => *count += 1,
                _ => runs.push((position, 1)),
            }
        }
        let reads = runs.into_iter().map(|(first, count)| async move {
            let page = self.shared.connection.read(first - 1, count).await?;
            if page.len() != count {
                let reason = "indexed but missing from a read of the ledger stream".to_owned();
                return Err(StoreError::Corrupt { position: first + page.len() as u64, reason });
            }
            page.iter().map(decode).collect::<Result<Vec<_>, _>>()
        });
        let pages: Vec<Result<Vec<RecordedEvent>, StoreError>> =
            futures::stream::iter(reads).buffered(READ_STREAM_CONCURRENCY).collect().await;
        let mut events = Vec::new();
        for page in pages {
            events.extend(page?);
        }
        for (event, version) in events.iter().zip(from_version..) {
            if event.stream != stream || event.version != version {
                let reason = format!("indexed as version {version} of `{stream}`, stored as another event");
                return Err(StoreError::Corrupt { position: event.position, reason });
            }
        }
        Ok(events)
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        read_all(&self.shared, from_position, limit).await
    }

    async fn read_raw(&self, from_position: u64, limit: usize) -> Result<Vec<RawEvent>, StoreError> {
        let page = self.shared.connection.read(from_position.max(1) - 1, limit).await?;
        Ok(page
            .into_iter()
            .map(|event| {
                // As stored, without judging: metadata that does not decode leaves the
                // organization and the leaf hash empty for the verifier to report.
                let metadata = serde_json::from_slice::<LedgerMetadata>(&event.custom_metadata).ok();
                RawEvent {
                    position: event.revision + 1,
                    org_id: metadata.as_ref().and_then(|metadata| metadata.org_id).map(|org| org.to_string()),
                    envelope: Arc::from(&event.data[..]),
                    leaf_hash: metadata.and_then(|metadata| hex::decode(metadata.leaf_hash).ok()).unwrap_or_default(),
                }
            })
            .collect())
    }

    async fn read_leaf_hashes(&self, from_position: u64, limit: usize) -> Result<Vec<[u8; 32]>, StoreError> {
        let page = self.shared.connection.read(from_position.max(1) - 1, limit).await?;
        page.iter()
            .map(|event| {
                let position = event.revision + 1;
                stored_leaf_hash(event).map(|(_, hash)| hash).map_err(|reason| StoreError::Corrupt { position, reason })
            })
            .collect()
    }

    fn subscribe(&self, from_position: u64) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        crate::follow::follow(self.shared.clone(), self.head.clone(), from_position)
    }

    async fn head(&self) -> Result<u64, StoreError> {
        Ok(*self.head.borrow())
    }

    async fn import(&self, rows: Vec<RawEvent>) -> Result<u64, StoreError> {
        self.shared.catch_up().await?;
        let head = {
            let index = self.shared.index();
            if let Some(damage) = index.damage() {
                return Err(StoreError::ReadOnly(damage.to_owned()));
            }
            index.head()
        };
        let events = crate::batch::imported(&rows, head)?;
        if events.is_empty() {
            return Ok(head);
        }
        // In appends of at most MAX_APPEND_BYTES, each landing exactly after the head it was
        // numbered from (its expected revision), or not at all.
        let mut rows = crate::batch::Batch::import_rows(&events).into_iter().peekable();
        let mut head = head;
        while rows.peek().is_some() {
            let (mut data, mut entries, mut bytes) = (Vec::new(), Vec::new(), 0);
            while let Some(row) = rows.next_if(|_| bytes < writer::MAX_APPEND_BYTES) {
                let ((event, size), entry) = writer::event_data(row)?;
                bytes += size + writer::EVENT_OVERHEAD_BYTES;
                data.push(event);
                entries.push(entry);
            }
            let expected = match head {
                0 => eventstore::ExpectedRevision::NoStream,
                head => eventstore::ExpectedRevision::Exact(head - 1),
            };
            let options = eventstore::AppendToStreamOptions::default().expected_revision(expected);
            let connection = &self.shared.connection;
            connection
                .client()
                .append_to_stream(connection.ledger.as_str(), &options, data)
                .await
                .map_err(|error| connection.failed(error))?;
            head = {
                let mut index = self.shared.index();
                for entry in entries {
                    index.apply(entry);
                }
                index.head()
            };
        }
        self.shared.publish(head);
        Ok(head)
    }

    async fn close(&self) {
        self.stop.send_replace(true);
        // Fails only when the writer is already stopping; then there is just the wait.
        let _ = self.appends.send(Message::Close).await;
        // The writer drops the head publisher last, after committing the queue.
        let mut head = self.head.clone();
        while head.changed().await.is_ok() {}
    }
}

/// The metadata and its leaf hash, which must be 32 bytes.
fn stored_leaf_hash(event: &eventstore::RecordedEvent) -> Result<(LedgerMetadata, [u8; 32]), String> {
    let metadata: LedgerMetadata = serde_json::from_slice(&event.custom_metadata)
        .map_err(|error| format!("the event's ledger metadata does not decode: {error}"))?;
    let hash = hex::decode(&metadata.leaf_hash)
        .ok()
        .and_then(|hash| <[u8; 32]>::try_from(hash).ok())
        .ok_or_else(|| "the leaf hash is not 32 bytes of hex".to_owned())?;
    Ok((metadata, hash))
}

/// Decodes an event of the ledger stream, checking its envelope against where it is stored and
/// what its metadata says (the checks SQLite makes against its row).
fn decode(event: &eventstore::RecordedEvent) -> Result<RecordedEvent, StoreError> {
    let position = event.revision + 1;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let (metadata, leaf_hash) = stored_leaf_hash(event).map_err(corrupt)?;
    let decoded = envelope::decode(Arc::from(&event.data[..]), leaf_hash)
        .map_err(|error| corrupt(format!("undecodable envelope: {error}")))?;
    let mismatch = if decoded.position != position {
        Some(format!("the envelope says position {}", decoded.position))
    } else if decoded.stream != metadata.stream || decoded.version != metadata.version {
        Some(format!("the envelope says version {} of `{}`", decoded.version, decoded.stream))
    } else if decoded.org_id != metadata.org_id || decoded.org_sequence != metadata.org_sequence {
        Some("the envelope's organization sequence differs from the metadata's".to_owned())
    } else if *decoded.event_id.as_uuid() != event.id {
        Some(format!("the envelope says event id {}", decoded.event_id))
    } else if decoded.event_type != event.event_type {
        Some(format!("the envelope says type `{}`", decoded.event_type))
    } else {
        None
    };
    match mismatch {
        Some(reason) => Err(corrupt(reason)),
        None => Ok(decoded),
    }
}

async fn read_all(shared: &Shared, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
    let page = shared.connection.read(from_position.max(1) - 1, limit).await?;
    page.iter().map(decode).collect()
}

#[async_trait::async_trait]
impl crate::follow::Pages for Shared {
    async fn page(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        read_all(self, from_position, limit).await
    }
}
