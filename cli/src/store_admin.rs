//! `credledger migrate` and `credledger copy`: the operator's commands that work on event stores
//! directly, not through a server.
//!
//! `copy` moves a whole ledger between backends (SQLite ↔ PostgreSQL ↔ …) row by row as stored:
//! same positions, same envelope bytes, same leaf hashes, so every signed checkpoint, inclusion
//! proof and export made before the move still verifies after it. It resumes an interrupted copy
//! (the destination must then be a prefix of the source) and ends by verifying the destination
//! against the source and against the last signed checkpoint.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use credledger_domain::ledger::{CHECKPOINT_SIGNED, CheckpointSigned};
use credledger_store::EventStore;
use credledger_store::verify::CompactRange;

/// Rows read and imported per transaction.
const PAGE: usize = 2000;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The event store to migrate: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DATABASE`.
    #[arg(long, env = "CREDLEDGER_STORE", hide_env_values = true)]
    store: String,
    /// Also migrate the read models in this data directory (`DATA_DIR/read.db`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The ledger to copy (stop its servers first, or copy what it holds when the copy starts).
    #[arg(long, env = "CREDLEDGER_COPY_FROM", hide_env_values = true)]
    from: String,
    /// Where to copy it: an empty store, or one an interrupted copy of the same ledger left.
    /// URLs with passwords are best given in the variables, out of `ps`.
    #[arg(long, env = "CREDLEDGER_COPY_TO", hide_env_values = true)]
    to: String,
}

#[derive(Debug, Args)]
pub struct AcceptRollbackArgs {
    /// The node's data directory: its read models say which events were acknowledged.
    #[arg(long, env = "CREDLEDGER_DATA_DIR", default_value = "./credledger-data")]
    data_dir: PathBuf,
    /// The event store; defaults to `sqlite://DATA_DIR/events.db`.
    #[arg(long, env = "CREDLEDGER_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Why the loss is accepted, in your words: recorded in the ledger for auditors.
    #[arg(long)]
    reason: String,
}

/// Goes on from a log that lost acknowledged events (restored from an older copy, or its last
/// writes lost with the storage): records the decision in the ledger itself, and moves the
/// node's read models aside so that the next start rebuilds them from the log as it is. Run it
/// with the server stopped.
pub fn accept_rollback(args: &AcceptRollbackArgs) -> anyhow::Result<()> {
    let reason = args.reason.trim();
    if reason.is_empty() {
        bail!("--reason must say why the loss is accepted");
    }
    runtime()?.block_on(async {
        let url =
            args.store.clone().unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("events.db").display()));
        let store = credledger_store::open(&url).await.context("opening the event store")?;
        let result = accept_rollback_in(&store, args, reason).await;
        store.close().await;
        result
    })
}

async fn accept_rollback_in(
    store: &Arc<dyn EventStore>,
    args: &AcceptRollbackArgs,
    reason: &str,
) -> anyhow::Result<()> {
    use credledger_domain::ledger::{LOG_ROLLBACK_ACCEPTED, LogRollbackAccepted, STREAM};

    let read_models = args.data_dir.join("read.db");
    let projections =
        credledger_projections::Projections::open(&read_models).context("opening the node's read models")?;
    let head = store.head().await?;
    let projected = projections.position();
    let signed = projections.latest_checkpoint()?.map_or(0, |latest| latest.tree_size);
    let tip = projections.projected_tip()?;
    drop(projections);
    let replaced = match tip {
        Some((position, applied)) if position <= head => {
            store.read_leaf_hashes(position, 1).await?.first() != Some(&applied)
        }
        _ => false,
    };
    let lost_through = projected.max(signed);
    if lost_through <= head && !replaced {
        bail!(
            "nothing to accept: the log ends at position {head} and holds every event this node's read models applied ({projected}) and every checkpoint they saw signed ({signed})"
        );
    }
    let now = chrono::Utc::now();
    let accepted = LogRollbackAccepted {
        log_head: head,
        lost_through,
        signed_tree_size: signed,
        reason: reason.to_owned(),
        accepted_at: now,
    };
    let event = credledger_store::NewEvent {
        event_id: credledger_domain::EventId::from_uuid(uuid::Uuid::now_v7()),
        event_type: LOG_ROLLBACK_ACCEPTED.to_owned(),
        schema_version: credledger_domain::SCHEMA_VERSION,
        org_id: None,
        occurred_at: now,
        actor: credledger_domain::Actor::system("operator"),
        request: None,
        payload: serde_json::to_value(&accepted)?,
    };
    // The read models go aside first: a node that stops here still refuses to run on them,
    // and rebuilds from the log at its next start.
    let aside = args.data_dir.join(format!("read.db.before-rollback-{}", now.timestamp()));
    std::fs::create_dir_all(&aside).with_context(|| format!("creating {}", aside.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = args.data_dir.join(format!("read.db{suffix}"));
        if file.exists() {
            std::fs::rename(&file, aside.join(format!("read.db{suffix}")))
                .with_context(|| format!("moving {} aside", file.display()))?;
        }
    }
    let appended = store.append(STREAM, credledger_store::ExpectedVersion::Any, vec![event]).await?;
    if lost_through > head {
        println!(
            "rollback accepted at position {}: the log goes on from position {head}; positions {}..={lost_through} are lost",
            appended.last_position,
            head + 1
        );
    } else {
        println!(
            "rollback accepted at position {}: the log no longer holds the events this node applied up to position {lost_through}; it goes on as it is",
            appended.last_position
        );
    }
    println!("this node's old read models are in {}; its next start rebuilds them from the log", aside.display());
    println!("other nodes on this log: stop them, move their DATA_DIR/read.db aside, and start them again");
    Ok(())
}

pub fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let store = credledger_store::open(&args.store).await.context("opening and migrating the event store")?;
        let head = store.head().await?;
        store.close().await;
        println!("event store migrated: {head} events");
        if let Some(dir) = &args.data_dir {
            credledger_projections::Projections::open(&dir.join("read.db")).context("migrating the read models")?;
            println!("read models migrated: {}", dir.join("read.db").display());
        }
        Ok(())
    })
}

pub fn copy(args: &CopyArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let source = credledger_store::open(&args.from).await.context("opening the source store")?;
        let destination = credledger_store::open(&args.to).await.context("opening the destination store")?;
        let result = copy_between(&source, &destination).await;
        source.close().await;
        destination.close().await;
        result
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

async fn copy_between(source: &Arc<dyn EventStore>, destination: &Arc<dyn EventStore>) -> anyhow::Result<()> {
    let end = source.head().await?;
    let start = destination.head().await?;
    if start > end {
        bail!(
            "the destination holds {start} events, more than the source's {end}: it is another ledger, or one that went on after an earlier copy"
        );
    }
    if start > 0 {
        // Resume only on top of a prefix of this very ledger, row for row.
        let mut position = 1;
        while position <= start {
            let limit = PAGE.min((start - position + 1) as usize);
            let theirs = source.read_raw(position, limit).await?;
            let ours = destination.read_raw(position, limit).await?;
            if theirs.len() != limit || ours.len() != limit {
                bail!("the logs end early while comparing the destination's first {start} events with the source");
            }
            if let Some(offset) = theirs.iter().zip(&ours).position(|(a, b)| a != b) {
                bail!(
                    "the destination is not empty and differs from the source at position {}: it is another ledger",
                    position + offset as u64
                );
            }
            position += limit as u64;
        }
        eprintln!("resuming: the destination already holds the first {start} events");
    }

    let progress = progress_bar(end - start, "copying");
    let mut next = start + 1;
    while next <= end {
        let rows = source.read_raw(next, PAGE.min((end - next + 1) as usize)).await?;
        if rows.is_empty() {
            bail!("the source ends at position {} before its head {end}", next - 1);
        }
        let count = rows.len() as u64;
        let head =
            destination.import(rows).await.with_context(|| format!("importing the events from position {next}"))?;
        next += count;
        progress.inc(count);
        if head != next - 1 {
            bail!("the destination's head is {head} after importing up to position {}", next - 1);
        }
    }
    progress.finish_and_clear();
    println!("copied {} events (positions {}..={end})", end - start, start + 1);

    let checked = verify_copy(source, destination, end).await?;
    match checked {
        Some((tree_size, root)) => println!(
            "verified: {end} events identical in both stores (positions, envelope bytes, leaf hashes); \
             the last signed checkpoint ({tree_size} events, root {root}) matches the destination"
        ),
        None => println!(
            "verified: {end} events identical in both stores (positions, envelope bytes, leaf hashes); \
             the ledger has no signed checkpoint yet"
        ),
    }
    Ok(())
}

/// Compares both stores row by row up to `end`, recomputes every leaf hash from its bytes, and
/// checks the destination's Merkle root against the last signed checkpoint. Returns that
/// checkpoint's tree size and root, if there is one.
async fn verify_copy(
    source: &Arc<dyn EventStore>,
    destination: &Arc<dyn EventStore>,
    end: u64,
) -> anyhow::Result<Option<(u64, String)>> {
    let progress = progress_bar(end, "verifying");
    let mut last_checkpoint: Option<CheckpointSigned> = None;
    let mut next = 1;
    while next <= end {
        let limit = PAGE.min((end - next + 1) as usize);
        let (theirs, ours) = (source.read_raw(next, limit).await?, destination.read_raw(next, limit).await?);
        if theirs.len() != ours.len() {
            bail!(
                "verification failed: the destination has {} events from position {next}, the source {}",
                ours.len(),
                theirs.len()
            );
        }
        for (theirs, ours) in theirs.iter().zip(&ours) {
            if theirs != ours {
                bail!("verification failed: position {} differs between the stores", ours.position);
            }
            if ours.leaf_hash != credledger_store::leaf_hash(&ours.envelope) {
                bail!("verification failed: the envelope at position {} does not hash to its leaf hash", ours.position);
            }
        }
        // Checkpoints are recorded as events; only the last one needs the tree recomputed.
        for event in destination.read_all(next, limit).await? {
            if event.event_type == CHECKPOINT_SIGNED {
                match serde_json::from_value(event.payload) {
                    Ok(checkpoint) => last_checkpoint = Some(checkpoint),
                    Err(error) => bail!("the checkpoint at position {} does not decode: {error}", event.position),
                }
            }
        }
        next += limit as u64;
        progress.inc(limit as u64);
    }
    progress.finish_and_clear();
    let Some(checkpoint) = last_checkpoint else { return Ok(None) };
    let mut tree = CompactRange::default();
    let mut next = 1;
    while next <= checkpoint.tree_size {
        let limit = PAGE.min((checkpoint.tree_size - next + 1) as usize);
        for leaf in destination.read_leaf_hashes(next, limit).await? {
            tree.push(leaf);
        }
        next += limit as u64;
    }
    let root = hex::encode(tree.root());
    if tree.size() != checkpoint.tree_size || root != checkpoint.root_hash {
        bail!(
            "verification failed: the destination's first {} events have root {root}, but the checkpoint signed {}",
            checkpoint.tree_size,
            checkpoint.root_hash
        );
    }
    Ok(Some((checkpoint.tree_size, root)))
}

fn progress_bar(length: u64, what: &'static str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} events ({per_sec})") {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}
