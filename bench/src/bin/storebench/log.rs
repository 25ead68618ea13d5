//! A generated log for the scenarios that read one (rebuild, verify, audit-query, hot-index):
//! an organization, machine tokens, their use, a few lifecycle changes, and a signed checkpoint
//! every so many events, as a busy server would have written them. It goes through the real
//! store's append path, with many appends in flight so that group commit makes large batches.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use credledger_domain::ledger::STREAM;
use credledger_domain::{CredentialId, machine_token};
use credledger_store::checkpoint::LedgerKey;
use credledger_store::verify::CompactRange;
use credledger_store::{AppendResult, EventStore, ExpectedVersion, NewEvent, StoreError};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;

use crate::workload::{Organization, Rng};

/// The ledger's name and key seed: the verify scenario checks the checkpoints signed here.
pub const ORIGIN: &str = "bench.credledger.test/credledger";
pub const KEY_SEED: [u8; 32] = [0x5B; 32];

/// Appends kept in flight while generating: enough to fill the writer's 4096-event batches.
const IN_FLIGHT: usize = 1024;
/// Usage events per append while generating (one usage stream each).
const USAGE_PER_APPEND: u64 = 8;
/// One usage event in this many is a coalesced denial.
const DENIED_EVERY: u64 = 50;
/// One lifecycle change (a roll, or a disable followed by an enable) per this many events.
const LIFECYCLE_EVERY: u64 = 1000;
/// Tokens that take the lifecycle changes, in turn (their states are kept in memory).
const LIFECYCLE_TOKENS: u64 = 1024;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct LogSpec {
    /// Events in the whole log, everything included.
    pub events: u64,
    /// Machine tokens created first (at most `events` minus the organization's three events).
    pub credentials: u64,
    /// A checkpoint is signed each time the head passes another multiple of this (0: never).
    pub checkpoint_every: u64,
    /// Every this-many-th token has conditions (0: none).
    pub conditions_every: u64,
}

/// What was generated.
#[derive(Debug)]
pub struct Log {
    pub organization: Organization,
    pub credentials: Vec<CredentialId>,
    /// The head: events in the log.
    pub events: u64,
    pub checkpoints: u64,
    pub seconds: f64,
    /// When generation started and ended: the span of the events' `recordedAt`.
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
}

pub fn ledger_key() -> anyhow::Result<LedgerKey> {
    Ok(LedgerKey::from_seed(ORIGIN, &KEY_SEED)?)
}

/// Appends `spec.events` events to `store` (expected empty).
pub async fn generate(store: &Arc<dyn EventStore>, spec: LogSpec) -> anyhow::Result<Log> {
    let started = Utc::now();
    let clock = Instant::now();
    let organization = Organization::generate();
    let mut rng = Rng::new(0x00C0_FFEE);
    let mut pipeline = Pipeline::new(store.clone());
    let mut signer = Signer::new(store.clone(), spec.checkpoint_every)?;

    let (stream, events) = organization.creation(Utc::now())?;
    let mut issued = events.len() as u64;
    pipeline.push(stream, ExpectedVersion::NoStream, events).await?;

    let credentials = spec.credentials.min(spec.events.saturating_sub(issued));
    let mut ids = Vec::with_capacity(credentials as usize);
    // The states of the tokens that take lifecycle changes, with their stream versions.
    let mut lifecycle: Vec<(CredentialId, machine_token::State, u64)> = Vec::new();
    for index in 0..credentials {
        let (id, state, created) = organization.machine_token(index, spec.conditions_every, &mut rng, Utc::now())?;
        pipeline.push(machine_token::stream(id), ExpectedVersion::NoStream, vec![created]).await?;
        ids.push(id);
        if index < LIFECYCLE_TOKENS {
            lifecycle.push((id, state, 0));
        }
        issued += 1;
        issued += signer.maybe_sign(&mut pipeline).await?;
        if index > 0 && index % 100_000 == 0 {
            eprintln!("storebench: {index} machine tokens created");
        }
    }

    // Lifecycle changes expect the tokens' creations committed.
    pipeline.drain().await?;
    let mut next_lifecycle = 0usize;
    let mut next_progress = 100_000;
    while issued < spec.events && !ids.is_empty() {
        let now = Utc::now();
        if !lifecycle.is_empty() && issued / LIFECYCLE_EVERY != (issued + USAGE_PER_APPEND) / LIFECYCLE_EVERY {
            let turn = next_lifecycle % lifecycle.len();
            let (stream, expected, events) =
                lifecycle_change(&organization, &mut lifecycle[turn], next_lifecycle, &mut rng, now)?;
            issued += events.len() as u64;
            pipeline.push(stream, expected, events).await?;
            next_lifecycle += 1;
        }
        let index = rng.below(ids.len() as u64);
        let credential = ids[index as usize];
        let count = USAGE_PER_APPEND.min(spec.events.saturating_sub(issued)).max(1);
        let events = (0..count)
            .map(|_| organization.usage(credential, index, DENIED_EVERY, &mut rng, now))
            .collect::<anyhow::Result<Vec<_>>>()?;
        pipeline.push(credledger_domain::usage::stream(credential), ExpectedVersion::Any, events).await?;
        issued += count;
        issued += signer.maybe_sign(&mut pipeline).await?;
        if issued >= next_progress {
            eprintln!("storebench: {issued} events appended");
            next_progress += 100_000;
        }
    }
    pipeline.drain().await?;
    let events = store.head().await?;
    Ok(Log {
        organization,
        credentials: ids,
        events,
        checkpoints: signer.signed,
        seconds: clock.elapsed().as_secs_f64(),
        started,
        ended: Utc::now(),
    })
}

/// The `turn`-th lifecycle change, of the token `(id, state, version)`: a roll on even turns, a
/// disable followed by an enable on odd ones. Updates the token's state and version; returns the
/// append, which expects the version exactly, so a token's changes land in the order decided.
fn lifecycle_change(
    organization: &Organization,
    (id, state, version): &mut (CredentialId, machine_token::State, u64),
    turn: usize,
    rng: &mut Rng,
    now: DateTime<Utc>,
) -> anyhow::Result<(String, ExpectedVersion, Vec<NewEvent>)> {
    let commands = if turn.is_multiple_of(2) {
        vec![Organization::roll_command(rng)?]
    } else {
        vec![machine_token::Command::Disable, machine_token::Command::Enable]
    };
    let mut events = Vec::new();
    for command in commands {
        let (after, decided) = organization.token_command(std::mem::take(state), command, now)?;
        *state = after;
        events.extend(decided);
    }
    let expected = ExpectedVersion::Exact(*version);
    *version += events.len() as u64;
    Ok((machine_token::stream(*id), expected, events))
}

/// Appends with many in flight; their positions are whatever order the writer takes them in.
struct Pipeline {
    store: Arc<dyn EventStore>,
    in_flight: FuturesUnordered<BoxFuture<'static, Result<AppendResult, StoreError>>>,
    /// The highest position an answered append reached.
    reached: u64,
}

impl Pipeline {
    fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store, in_flight: FuturesUnordered::new(), reached: 0 }
    }

    async fn push(&mut self, stream: String, expected: ExpectedVersion, events: Vec<NewEvent>) -> anyhow::Result<()> {
        while self.in_flight.len() >= IN_FLIGHT {
            self.complete_one().await?;
        }
        let store = self.store.clone();
        self.in_flight.push(Box::pin(async move { store.append(&stream, expected, events).await }));
        Ok(())
    }

    async fn complete_one(&mut self) -> anyhow::Result<()> {
        if let Some(result) = self.in_flight.next().await {
            self.reached = self.reached.max(result.context("a generated append failed")?.last_position);
        }
        Ok(())
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() {
            self.complete_one().await?;
        }
        Ok(())
    }
}

/// Signs checkpoints as the server's signer does: over the committed head, appended to the
/// `ledger` stream while other appends are in flight.
struct Signer {
    store: Arc<dyn EventStore>,
    key: LedgerKey,
    every: u64,
    next: u64,
    tree: CompactRange,
    signed: u64,
}

impl Signer {
    fn new(store: Arc<dyn EventStore>, every: u64) -> anyhow::Result<Self> {
        Ok(Self { store, key: ledger_key()?, every, next: every, tree: CompactRange::default(), signed: 0 })
    }

    /// Signs when the log has passed the next multiple of `every`; returns the events appended.
    async fn maybe_sign(&mut self, pipeline: &mut Pipeline) -> anyhow::Result<u64> {
        if self.every == 0 || pipeline.reached < self.next {
            return Ok(0);
        }
        let head = self.store.head().await?;
        while self.tree.size() < head {
            let want = usize::try_from(head - self.tree.size()).unwrap_or(usize::MAX).min(65_536);
            let leaves = self.store.read_leaf_hashes(self.tree.size() + 1, want).await?;
            anyhow::ensure!(!leaves.is_empty(), "the log ends before its head");
            for leaf in leaves {
                self.tree.push(leaf);
            }
        }
        let event = self.key.checkpoint_event(head, self.tree.root(), Utc::now())?;
        pipeline.push(STREAM.to_owned(), ExpectedVersion::Any, vec![event]).await?;
        self.signed += 1;
        while self.next <= pipeline.reached {
            self.next += self.every;
        }
        Ok(1)
    }
}
