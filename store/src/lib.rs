//! credledger's event store: the `EventStore` port every backend implements, the types that cross
//! it, and the leaf hash that makes the log verifiable.
//!
//! The log is the only source of truth. A backend hands out global positions (gap-free, in
//! commit order, from 1), stream versions (from 0) and per-organization sequences (from 1) inside
//! the transaction that commits the events, serialises each event's envelope once, stores those
//! exact bytes and hashes them into the leaf hash. Readers and offline verifiers work from the
//! stored bytes, never from a re-serialised struct.
//!
//! Backends are chosen by URL with [`open`]; the SQLite backend ([`SqliteStore`]) is the embedded
//! default. Every backend runs the same contract suite ([`store_contract_tests!`]).

mod batch;
#[doc(hidden)]
pub mod checkpoint;
pub mod contract;
mod envelope;
#[cfg(feature = "eventstoredb")]
mod esdb;
mod follow;
pub mod merkle;
mod postgres;
mod recent;
mod sqlite;
#[doc(hidden)]
pub mod testing;
pub mod verify;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use credledger_domain::{Actor, EventId, OrgId, RequestMeta};
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use sqlite::checkpointer::Checkpointer as WalCheckpointer;

/// Opens the store a URL names: `sqlite://PATH` or `sqlite:PATH` (the file and its directory are
/// created if missing), `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (also `postgresql://`,
/// with libpq's keyword parameters; the database must exist, its tables are created), or, in a
/// build with the `eventstoredb` feature, `esdb://HOST:PORT?tls=false&ledger=NAME` (also
/// `esdb+discover://`, `kurrentdb://`). Any other
/// scheme is [`StoreError::UnsupportedUrl`].
pub async fn open(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        if path.is_empty() {
            return Err(StoreError::UnsupportedUrl("sqlite URL without a path".to_owned()));
        }
        let store = SqliteStore::open(Path::new(path)).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(url).await?));
    }
    if ["esdb://", "esdb+discover://", "kurrentdb://", "kurrentdb+discover://"].iter().any(|s| url.starts_with(s)) {
        #[cfg(feature = "eventstoredb")]
        return Ok(Arc::new(esdb::EsdbStore::open(url).await?));
        #[cfg(not(feature = "eventstoredb"))]
        return Err(StoreError::UnsupportedUrl(
            "this build has no EventStoreDB backend: build with --features eventstoredb".to_owned(),
        ));
    }
    // Only the scheme goes into the error: the rest of a URL may carry a password.
    let scheme = url.split_once(':').map_or("(none)", |(scheme, _)| scheme);
    Err(StoreError::UnsupportedUrl(format!("unsupported store URL scheme `{scheme}`")))
}

/// The log: append with optimistic concurrency per stream, read, and follow.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + fmt::Debug {
    /// Appends `events` to `stream` if its version is `expected`, atomically, and returns once
    /// they are durable. Retrying an append whose reply was lost (the same event ids, in the same
    /// order, to the same stream) returns the original result and writes nothing, whatever
    /// `expected` says.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Appends like [`EventStore::append`], but only if no event of `basis.stream` was committed
    /// after `basis.position`: the append records a decision taken on a view of that stream up to
    /// that position (a credential's use, judged on its lifecycle as projected), and must not land
    /// after an event that may have changed the decision (a revocation). Otherwise it is refused
    /// with [`StoreError::Superseded`] and nothing is written. The check runs where the log is
    /// ordered, inside the committing transaction, so no use lands after such an event on any
    /// node. A retry of an append already recorded returns the original result, as for `append`.
    async fn append_on_basis(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        basis: Basis,
    ) -> Result<AppendResult, StoreError>;

    /// The stream's events with version `>= from_version`, in version order.
    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError>;

    /// At most `limit` events with position `>= from_position`, in position order.
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// At most `limit` stored rows with position `>= from_position`, in position order, exactly as
    /// stored and *without* any check that the envelope decodes or matches its row: what a full
    /// export hands to an offline verifier, which must see a damaged log as it is.
    async fn read_raw(&self, from_position: u64, limit: usize) -> Result<Vec<RawEvent>, StoreError>;

    /// The stored leaf hashes of at most `limit` events from `from_position`, in position order:
    /// what the Merkle tree is built from, without reading envelopes.
    async fn read_leaf_hashes(&self, from_position: u64, limit: usize) -> Result<Vec<[u8; 32]>, StoreError>;

    /// Every event with position `>= from_position`: first those already committed, then each
    /// new one as it commits, in position order, each exactly once. The stream ends (after the
    /// last committed event) when the store is closed, or with an error item if reading fails.
    fn subscribe(&self, from_position: u64) -> BoxStream<'static, Result<RecordedEvent, StoreError>>;

    /// The last committed position; 0 when the log is empty.
    async fn head(&self) -> Result<u64, StoreError>;

    /// Stores rows read from another log ([`EventStore::read_raw`]) exactly as they are, same
    /// positions, envelope bytes and leaf hashes, and returns the new head:
    /// how a ledger moves between backends. Refused, writing nothing, unless the rows continue
    /// this log gap-free from its head and every row is whole (its envelope decodes, states the
    /// row's position and hashes to the row's leaf hash). SQLite and PostgreSQL import in one
    /// transaction; EventStoreDB in appends of under 1 MiB, so a failure there may leave a prefix
    /// imported (which a later import continues).
    async fn import(&self, rows: Vec<RawEvent>) -> Result<u64, StoreError>;

    /// Whether this process leads the background work that must run once per ledger (the expiry
    /// sweeper, checkpoint signing, process managers), as it changes. A backend that only one
    /// process can open leads for as long as it is open (the default: always `true`); a shared
    /// one elects a single leader among the processes using it (PostgreSQL: by a lease).
    fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        tokio::sync::watch::channel(true).1
    }

    /// Whether this process leads at this instant: checked right before each piece of
    /// leader-only work, because a process may have stalled since [`EventStore::leadership`] last
    /// changed (a shared backend's leader holds a lease that runs out by the clock). What a
    /// stale leader writes anyway stays fenced: checkpoints by the ledger stream's expected
    /// version, background events by ids derived from their cause.
    fn leads_now(&self) -> bool {
        *self.leadership().borrow()
    }

    /// How far the shared log reached when this process last asked the database, and when it
    /// asked: what tells a node whether its view may be behind what other nodes have written.
    /// `None` for a log whose only writer is this process (its `head()` is always the log's).
    fn head_checks(&self) -> Option<tokio::sync::watch::Receiver<HeadCheck>> {
        None
    }

    /// Stops accepting appends, commits those already queued, and stops the writer. Later
    /// appends fail with [`StoreError::Closed`]; reads keep working.
    async fn close(&self);
}

/// The version a stream must be at for an append to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check: append after whatever is there (usage streams, which nothing decides on).
    Any,
    /// The stream must have no events yet.
    NoStream,
    /// The stream's last event must have this version (versions start at 0).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// One answer to "how far does the shared log reach?": at `asked` (taken before the question was
/// sent), the log held no event after `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadCheck {
    pub head: u64,
    pub asked: std::time::Instant,
}

/// What an append's decision was taken on: the events of `stream` up to log position `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basis {
    /// The stream whose later events would void the decision (a credential's lifecycle stream).
    pub stream: String,
    /// The log position the decider's view of the stream had reached.
    pub position: u64,
}

/// An event as a decider produced it, before the log gives it a place.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The idempotency key: a v7 UUID chosen by the caller.
    pub event_id: EventId,
    pub event_type: String,
    pub schema_version: u32,
    /// The organization whose sequence the event joins; `None` for server-wide events.
    pub org_id: Option<OrgId>,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub request: Option<RequestMeta>,
    pub payload: serde_json::Value,
}

/// An event as the log holds it. Every field except `envelope` and `leaf_hash` is decoded from
/// `envelope`, the exact bytes that were stored and hashed.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Global, gap-free, in commit order, from 1.
    pub position: u64,
    pub stream: String,
    /// Per stream, from 0.
    pub version: u64,
    /// Contiguous per organization, from 1; `None` when `org_id` is `None`.
    pub org_sequence: Option<u64>,
    pub event_id: EventId,
    pub event_type: String,
    pub schema_version: u32,
    pub org_id: Option<OrgId>,
    pub occurred_at: DateTime<Utc>,
    /// The writer's clock when the event's batch was built.
    pub recorded_at: DateTime<Utc>,
    pub actor: Actor,
    pub request: Option<RequestMeta>,
    pub payload: serde_json::Value,
    /// [`leaf_hash`] of `envelope`, computed once at append.
    pub leaf_hash: [u8; 32],
    /// The exact stored bytes of the envelope.
    pub envelope: Arc<[u8]>,
}

impl RecordedEvent {
    /// Decodes an envelope as exported or stored, hashing its bytes: what an offline verifier
    /// does with each line of an export.
    pub fn from_envelope(envelope: &[u8]) -> Result<Self, StoreError> {
        envelope::decode(Arc::from(envelope), leaf_hash(envelope))
            .map_err(|error| StoreError::Corrupt { position: 0, reason: format!("undecodable envelope: {error}") })
    }
}

/// A stored row as it is, undecoded: see [`EventStore::read_raw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// The row's position (its key in the log, not the one the envelope claims).
    pub position: u64,
    /// The organization column beside the envelope, for filtering an organization's export.
    pub org_id: Option<String>,
    /// The stored envelope bytes.
    pub envelope: Arc<[u8]>,
    /// The stored leaf hash, whatever its length.
    pub leaf_hash: Vec<u8>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// The position of the append's first event.
    pub first_position: u64,
    /// The position of the append's last event.
    pub last_position: u64,
    /// The version of the append's last event: the stream's version now, so the next append
    /// passes `ExpectedVersion::Exact(next_expected_version)`.
    pub next_expected_version: u64,
}

/// Why the store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream first. Reload the stream (its version is `actual`,
    /// `None` when it has no events), decide again and retry; the API answers 409 when the
    /// command no longer applies. Nothing was written.
    #[error("stream `{stream}` expected at {expected}, but it is at {}", match actual {
        Some(version) => format!("version {version}"),
        None => "no stream".to_owned(),
    })]
    WrongExpectedVersion { stream: String, expected: ExpectedVersion, actual: Option<u64> },
    /// The append was decided on a view of `stream` up to position `basis`, but the stream has an
    /// event at `position`, after it (a revocation, say). Catch the view up to `position`, decide
    /// again, and append again if the decision stands. Nothing was written.
    #[error(
        "stream `{stream}` has an event at position {position}, after the view at {basis} the append was decided on"
    )]
    Superseded { stream: String, basis: u64, position: u64 },
    /// An event id of the append is already recorded, but the append is not a retry of the one
    /// that recorded it (another stream or type, another order, or only some of its ids). The
    /// caller reused an id by mistake: mint fresh ids. Nothing was written.
    #[error("event {event_id} is already recorded in stream `{stream}` by a different append")]
    DuplicateEventId { event_id: EventId, stream: String },
    /// An append without events: a caller bug, nothing to write.
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// A stream name that is empty, longer than 256 bytes, or holds whitespace or control
    /// characters: a caller bug.
    #[error("`{0}` is not a valid stream name")]
    InvalidStreamName(String),
    /// The store URL names a backend this build does not have; fix the configuration.
    #[error("{0}")]
    UnsupportedUrl(String),
    /// An event could not be serialised into its envelope (e.g. `occurred_at` outside the years
    /// 0..=9999). The append was refused; fix the event.
    #[error("cannot serialise the event envelope: {0}")]
    Encode(#[source] serde_json::Error),
    /// The database failed. For a read, retry or report; the server keeps running.
    #[error("event store database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed a statement, or could not be reached. For a read, retry or
    /// report; an append in a failed batch fails as [`StoreError::BatchFailed`] and may be retried.
    #[error("event store database: {0}")]
    Postgres(String),
    /// No read connection could be had in time: the store is overloaded or its file is gone.
    #[error("event store connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// The store's file or directory could not be created, or its writer could not be started.
    #[error("event store: {0}")]
    Io(#[from] std::io::Error),
    /// The batch that carried this append failed to commit (disk full, I/O error, a damaged
    /// file), so every append in it failed. Retry the same append: its event ids make the retry
    /// safe even if the commit did reach the disk. If it keeps failing, stop and inspect the file.
    #[error("the batch carrying this append failed: {0}")]
    BatchFailed(Arc<StoreError>),
    /// A stored event does not decode or does not match its row: the file was damaged or
    /// written by something else. Stop and verify the log against its checkpoints.
    #[error("event at position {position} is corrupt: {reason}")]
    Corrupt { position: u64, reason: String },
    /// The file was migrated by a newer release; run that release (or newer) instead.
    #[error("event store schema version {found} is newer than this release supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    /// The ledger found its stored log no longer matches what it signed (events altered,
    /// removed or inserted) and refuses to write on top of it; reads keep working. Verify a
    /// ledger export, restore the log, and restart.
    #[error("the ledger is read-only: {0}")]
    ReadOnly(String),
    /// The EventStoreDB/KurrentDB client failed (server unreachable, access denied, an append
    /// over the server's size limit...). For a read, retry or report; the client reconnects by
    /// itself. Never holds the store URL's credentials.
    #[cfg(feature = "eventstoredb")]
    #[error("EventStoreDB: {0}")]
    EventStoreDb(String),
    /// The store was closed or its writer has stopped: nothing more can be appended. Shut down,
    /// or reopen the store.
    #[error("the event store is closed")]
    Closed,
}

impl StoreError {
    /// Whether the storage under the log failed (a disk full, an I/O error, a read-only file
    /// system, the database unreachable) rather than the caller or the ledger: the answer is
    /// then "try again later", and the server recovers by itself once the fault clears.
    pub fn is_storage_fault(&self) -> bool {
        matches!(self, Self::Sqlite(_) | Self::Postgres(_) | Self::Pool(_) | Self::Io(_) | Self::BatchFailed(_))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        // The default text of a server error is just "db error": say what the server said.
        match error.as_db_error() {
            Some(db) => Self::Postgres(format!("{} ({})", db.message(), db.code().code())),
            None => Self::Postgres(match std::error::Error::source(&error) {
                Some(source) => format!("{error}: {source}"),
                None => error.to_string(),
            }),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => error.into(),
            other => Self::Postgres(format!("connection pool: {other}")),
        }
    }
}

/// The Merkle leaf hash of an envelope (RFC 6962): SHA-256(0x00 ‖ envelope bytes). Public so that
/// offline verification hashes exactly as the store did.
pub fn leaf_hash(envelope: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(envelope);
    hasher.finalize().into()
}

/// What every backend refuses before queueing an append, without looking at the log: a bad
/// stream name, no events, or one event id twice.
pub(crate) fn check_append(stream: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    check_stream_name(stream)?;
    if events.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    match events.iter().find(|event| !seen.insert(event.event_id)) {
        Some(event) => Err(StoreError::DuplicateEventId { event_id: event.event_id, stream: stream.to_owned() }),
        None => Ok(()),
    }
}

/// A stream name is chosen by code (`mt-{id}`, `usage-{id}`, `ledger`), never typed by a user;
/// the check keeps a bug from writing a name nobody can read back or print.
pub(crate) fn check_stream_name(stream: &str) -> Result<(), StoreError> {
    let valid =
        !stream.is_empty() && stream.len() <= 256 && !stream.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid { Ok(()) } else { Err(StoreError::InvalidStreamName(stream.chars().take(64).collect())) }
}
