//! The PostgreSQL backend: one database holds the log, shared by any number of server processes.
//!
//! Appends from this process go through one writer task that commits by group commit (see
//! `writer`); appends from every process are serialised by a transaction-level advisory lock, under
//! which the writer reads the head and hands out the next positions. A position is thus given
//! only after every lower one has committed, so positions are gap-free and in commit order as
//! every reader sees them.
//!
//! Every commit notifies the channel `credledger_events` with its new head, inside the committing
//! transaction (PostgreSQL delivers it only if the commit succeeds). Each process listens on it to
//! learn of other processes' appends, and polls the head every second as well, so a notification
//! lost with a dropped connection delays an event by at most a poll, never loses it. What a
//! subscription reads is decided by the head and read from the table, as in the SQLite backend.

mod migrate;
mod tls;
mod writer;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::stream::BoxStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    AppendResult, Basis, EventStore, ExpectedVersion, HeadCheck, NewEvent, RawEvent, RecordedEvent, StoreError,
    envelope,
};
use writer::{Message, Writer};

/// Appends that may wait for the writer before `append` itself waits.
const QUEUE: usize = 16 * 1024;

/// Connections per process: the writer's, the reads', and headroom for subscriptions' pages.
const POOL_SIZE: usize = 16;

/// The notification channel every commit signals with its new head.
pub(crate) const CHANNEL: &str = "credledger_events";

/// How often the head is polled besides notifications, and how often leadership is checked.
const POLL: Duration = Duration::from_secs(1);

/// How long a head poll may take before its connection counts as lost.
const LEADER_CHECK: Duration = Duration::from_secs(3);

/// How long the leader's lease lasts from a renewal; it is renewed every [`POLL`].
const LEASE: Duration = Duration::from_secs(4);

/// How much sooner than the database the leader stops believing in its lease: room for the two
/// clocks running at slightly different rates.
const LEASE_MARGIN: Duration = Duration::from_millis(500);

/// How long a renewal may take: it must come back before the previous one's lease runs out
/// (a renewal starts [`POLL`] after the previous one).
const LEASE_CHECK: Duration = Duration::from_secs(2);

/// Advisory lock keys, in the 64-bit space PostgreSQL shares among all users of a database:
/// ASCII "cl-appnd" and "cl-migr8", unlikely to collide with anyone else's.
pub(crate) const APPEND_LOCK: i64 = 0x636c_2d61_7070_6e64;
const MIGRATE_LOCK: i64 = 0x636c_2d6d_6967_7238;

/// The log in one PostgreSQL database. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PostgresStore {
    config: tokio_postgres::Config,
    /// TLS as the URL's `sslmode` asks (none by default).
    tls: tls::Connector,
    appends: mpsc::Sender<Message>,
    reader: Arc<Reader>,
    commits: Arc<AtomicU64>,
    leadership: OnceLock<watch::Receiver<bool>>,
    lease: Arc<LeaseDeadline>,
    head_checks: watch::Receiver<HeadCheck>,
}

#[derive(Debug)]
struct Reader {
    pool: Pool,
    head: watch::Receiver<u64>,
}

impl PostgresStore {
    /// Connects to the database a `postgres://` or `postgresql://` URL names, applies the
    /// migrations (one process at a time) and starts the writer and the listener.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // The URL may carry a password: nothing of it goes into errors or logs.
        let (url, transport) = tls::Tls::split(url)?;
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|error| StoreError::UnsupportedUrl(format!("invalid PostgreSQL URL: {}", redacted(&error))))?;
        config.ssl_mode(transport.ssl_mode());
        let tls = transport.connector()?;
        guard_connections(&mut config);
        let manager = Manager::from_config(
            config.clone(),
            tls.0.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|error| StoreError::Postgres(format!("connection pool: {error}")))?;
        let head = {
            let mut client = pool.get().await?;
            migrate::apply(&mut client).await?;
            head(&client).await?
        };
        let (head_sender, head_receiver) = watch::channel(head);
        let (checks, head_checks) = watch::channel(HeadCheck { head, asked: std::time::Instant::now() });
        let (appends, receiver) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer { pool: pool.clone(), head: head_sender, commits: commits.clone() };
        tokio::spawn(writer.run(receiver));
        tokio::spawn(listen(config.clone(), tls.clone(), appends.downgrade(), checks));
        tracing::debug!(head, "event store opened on PostgreSQL");
        Ok(Self {
            config,
            tls,
            appends,
            reader: Arc::new(Reader { pool, head: head_receiver }),
            commits,
            leadership: OnceLock::new(),
            lease: Arc::default(),
            head_checks,
        })
    }

    /// Transactions this process's writer has committed since open.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// Bounds on what a dead or frozen peer can cost, where the URL sets none: a connection attempt
/// gives up after 10 s; keepalives find a silently dropped connection within about a minute; and
/// the server ends a session that sits in a transaction for 30 s (a frozen writer holding the
/// append lock would otherwise stop every node's appends).
fn guard_connections(config: &mut tokio_postgres::Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.keepalives(true);
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_options().is_none() {
        config.options("-c idle_in_transaction_session_timeout=30000");
    }
}

/// The text of a URL parse error, which never quotes the URL itself; kept to its first line.
fn redacted(error: &tokio_postgres::Error) -> String {
    error.to_string().lines().next().unwrap_or_default().to_owned()
}

async fn head(client: &tokio_postgres::Client) -> Result<u64, StoreError> {
    let head: i64 = client.query_one("SELECT COALESCE(MAX(position), 0) FROM events", &[]).await?.get(0);
    crate::batch::unsigned(head, 0, "the head position is negative")
}

#[async_trait::async_trait]
impl EventStore for PostgresStore {
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
        let from_version = i64::try_from(from_version).unwrap_or(i64::MAX);
        let client = self.reader.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT position, envelope, leaf_hash FROM events WHERE stream = $1 AND version >= $2 ORDER BY version",
            )
            .await?;
        decode_rows(&client.query(&statement, &[&stream, &from_version]).await?)
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.reader.read_all(from_position, limit).await
    }

    async fn read_raw(&self, from_position: u64, limit: usize) -> Result<Vec<RawEvent>, StoreError> {
        let (from_position, limit) = bounds(from_position, limit);
        let client = self.reader.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT position, org_id, envelope, leaf_hash FROM events WHERE position >= $1 \
                 ORDER BY position LIMIT $2",
            )
            .await?;
        let rows = client.query(&statement, &[&from_position, &limit]).await?;
        Ok(rows
            .iter()
            .map(|row| RawEvent {
                position: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                org_id: row.get::<_, Option<uuid::Uuid>>(1).map(|org| org.hyphenated().to_string()),
                envelope: Arc::from(row.get::<_, &[u8]>(2)),
                leaf_hash: row.get::<_, Vec<u8>>(3),
            })
            .collect())
    }

    async fn read_leaf_hashes(&self, from_position: u64, limit: usize) -> Result<Vec<[u8; 32]>, StoreError> {
        let (from_position, limit) = bounds(from_position, limit);
        let client = self.reader.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT position, leaf_hash FROM events WHERE position >= $1 ORDER BY position LIMIT $2")
            .await?;
        client
            .query(&statement, &[&from_position, &limit])
            .await?
            .iter()
            .map(|row| {
                <[u8; 32]>::try_from(row.get::<_, &[u8]>(1)).map_err(|_| StoreError::Corrupt {
                    position: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                    reason: "the leaf hash is not 32 bytes".to_owned(),
                })
            })
            .collect()
    }

    fn subscribe(&self, from_position: u64) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        crate::follow::follow(self.reader.clone(), self.reader.head.clone(), from_position)
    }

    async fn head(&self) -> Result<u64, StoreError> {
        Ok(*self.reader.head.borrow())
    }

    async fn import(&self, rows: Vec<RawEvent>) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.appends.send(Message::Import(rows, reply)).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn leadership(&self) -> watch::Receiver<bool> {
        self.leadership
            .get_or_init(|| {
                let (sender, receiver) = watch::channel(false);
                tokio::spawn(lead(
                    self.config.clone(),
                    self.tls.clone(),
                    sender,
                    self.lease.clone(),
                    self.reader.head.clone(),
                ));
                receiver
            })
            .clone()
    }

    fn head_checks(&self) -> Option<watch::Receiver<HeadCheck>> {
        Some(self.head_checks.clone())
    }

    fn leads_now(&self) -> bool {
        self.lease.holds()
    }

    async fn close(&self) {
        let _ = self.appends.send(Message::Close).await;
        let mut head = self.reader.head.clone();
        while head.changed().await.is_ok() {}
    }
}

impl Reader {
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (from_position, limit) = bounds(from_position, limit);
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT position, envelope, leaf_hash FROM events WHERE position >= $1 ORDER BY position LIMIT $2",
            )
            .await?;
        decode_rows(&client.query(&statement, &[&from_position, &limit]).await?)
    }
}

#[async_trait::async_trait]
impl crate::follow::Pages for Reader {
    async fn page(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all(from_position, limit).await
    }
}

fn bounds(from_position: u64, limit: usize) -> (i64, i64) {
    (i64::try_from(from_position).unwrap_or(i64::MAX), i64::try_from(limit).unwrap_or(i64::MAX))
}

/// Decodes `(position, envelope, leaf_hash)` rows, checking each envelope against its row.
fn decode_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter()
        .map(|row| envelope::decode_stored(row.get::<_, i64>(0), row.get::<_, &[u8]>(1), row.get::<_, &[u8]>(2)))
        .collect()
}

/// Learns of commits by any process: notifications on [`CHANNEL`] as they happen, and a poll of
/// the head every [`POLL`] in case a notification was lost (a dropped connection, a full queue).
/// Each head seen goes to the writer, which publishes it; each polled head also goes to `checks`
/// with the moment it was asked for, which bounds how stale this process's view can be. Stops
/// when the store is gone.
async fn listen(
    config: tokio_postgres::Config,
    tls: tls::Connector,
    writer: mpsc::WeakSender<Message>,
    checks: watch::Sender<HeadCheck>,
) {
    let report = |head: u64| match writer.upgrade() {
        // A full queue only delays this head until the next poll.
        Some(writer) => {
            let _ = writer.try_send(Message::Seen(head));
            true
        }
        None => false,
    };
    loop {
        let (client, mut connection) = match config.connect(tls.0.clone()).await {
            Ok(connected) => connected,
            Err(error) => {
                tracing::warn!(error = %StoreError::from(error), "the event store listener cannot connect; retrying");
                tokio::time::sleep(POLL).await;
                if writer.upgrade().is_none() {
                    return;
                }
                continue;
            }
        };
        let (notes, mut notified) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = futures::StreamExt::next(&mut messages).await {
                if let tokio_postgres::AsyncMessage::Notification(note) = message
                    && notes.send(note.payload().parse::<u64>().unwrap_or(0)).is_err()
                {
                    return;
                }
            }
        });
        if let Err(error) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            tracing::warn!(error = %StoreError::from(error), "the event store listener cannot listen; retrying");
            driver.abort();
            tokio::time::sleep(POLL).await;
            continue;
        }
        let mut poll = tokio::time::interval(POLL);
        loop {
            let seen = tokio::select! {
                note = notified.recv() => match note {
                    Some(head) => Ok((head, None)),
                    None => break,
                },
                _ = poll.tick() => {
                    let asked = std::time::Instant::now();
                    match tokio::time::timeout(LEADER_CHECK, head(&client)).await {
                        Ok(polled) => polled.map(|head| (head, Some(asked))),
                        Err(_) => Err(StoreError::Postgres("the listener's connection did not answer in time".to_owned())),
                    }
                }
            };
            match seen {
                Ok((head, asked)) => {
                    if !report(head) {
                        driver.abort();
                        return;
                    }
                    if let Some(asked) = asked {
                        checks.send_replace(HeadCheck { head, asked });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the event store listener lost its connection; reconnecting");
                    break;
                }
            }
        }
        driver.abort();
        if writer.upgrade().is_none() {
            return;
        }
    }
}

/// Holds the leader's lease while this process can, and says so on `leading` and in `lease`.
///
/// Every [`POLL`] it takes or renews the lease row for [`LEASE`] from the database's clock.
/// Locally the lease counts from the moment the request was sent (so never past the database's
/// view of it), less [`LEASE_MARGIN`]: a process that stalls stops leading by its own clock
/// before any other process can take over, and on resuming finds the row held by another process
/// and steps down. A lost connection steps down at once. Stops when the store is closed or
/// nobody listens.
async fn lead(
    config: tokio_postgres::Config,
    tls: tls::Connector,
    leading: watch::Sender<bool>,
    lease: Arc<LeaseDeadline>,
    mut head: watch::Receiver<u64>,
) {
    let holder = uuid::Uuid::new_v4();
    let lease_seconds = LEASE.as_secs_f64();
    let step_down = |reason: &str| {
        lease.end();
        if leading.send_replace(false) {
            tracing::warn!(reason, "no longer holding the leader's lease; background work stops here");
        }
    };
    let failed = |error: &str| {
        tracing::warn!(error, "the leader's lease cannot be taken or renewed; retrying");
    };
    let gone = |leading: &watch::Sender<bool>, head: &mut watch::Receiver<u64>| {
        leading.is_closed() || head.has_changed().is_err()
    };
    while !gone(&leading, &mut head) {
        let connected = config.connect(tls.0.clone()).await;
        let Ok((client, connection)) = connected else {
            step_down("cannot connect");
            tokio::time::sleep(POLL).await;
            continue;
        };
        let driver = tokio::spawn(connection);
        let statement = match client.prepare(include_str!("lease.sql")).await {
            Ok(statement) => statement,
            Err(error) => {
                let error = StoreError::from(error).to_string();
                failed(&error);
                step_down(&error);
                driver.abort();
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        loop {
            let asked = std::time::Instant::now();
            // A renewal that does not come back before the lease would end counts as lost.
            match tokio::time::timeout(LEASE_CHECK, client.query_opt(&statement, &[&holder, &lease_seconds])).await {
                Ok(Ok(Some(row))) => {
                    lease.extend_to(asked + LEASE.saturating_sub(LEASE_MARGIN));
                    if !leading.send_replace(true) {
                        let term: i64 = row.get(0);
                        tracing::info!(term, "holding the leader's lease: background work runs here");
                    }
                }
                Ok(Ok(None)) => step_down("another process holds the lease"),
                Ok(Err(error)) => {
                    let error = StoreError::from(error).to_string();
                    failed(&error);
                    step_down(&error);
                    break;
                }
                Err(_) => {
                    step_down("the lease's connection did not answer in time");
                    break;
                }
            }
            tokio::time::sleep(POLL).await;
            if gone(&leading, &mut head) {
                break;
            }
        }
        driver.abort();
    }
    lease.end();
    leading.send_replace(false);
}

/// Until when, by this process's monotonic clock, its lease holds; checked before each piece of
/// leader-only work, since the process may have stalled since it last heard from the database.
#[derive(Debug, Default)]
struct LeaseDeadline(std::sync::Mutex<Option<std::time::Instant>>);

impl LeaseDeadline {
    fn extend_to(&self, until: std::time::Instant) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(until);
    }

    fn end(&self) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn holds(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|until| std::time::Instant::now() < until)
    }
}
