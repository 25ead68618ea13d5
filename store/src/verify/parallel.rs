//! Taking export lines apart on every core while one thread checks them in order.
//!
//! What a line needs on its own — the split into head and envelope, the hex of its hashes, the
//! SHA-256 of its envelope and the few envelope fields the checks read — is independent of every
//! other line; what a line needs from the lines before it (its expected position, its stream's
//! version, the Merkle prefixes) is not. So the calling thread reads the export in batches of
//! lines and hands each batch to a worker; workers take lines apart; the calling thread receives
//! the batches back in order and runs the sequential checks on them. At most [`IN_FLIGHT`] batches
//! are out at once, each at most [`BATCH_BYTES`] or one line, so memory stays bounded whatever
//! the export's size.
//!
//! Everything a worker finds wrong is carried back as part of its [`Parsed`] line, and the
//! checking thread reports it in the order the sequential reading always did: the first fault of
//! the first faulty line, never one found by a worker further ahead.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::VerifyError;
use super::line::{self, EnvelopeFields, LineRead, MAX_LINE};
use crate::leaf_hash;

/// Lines per batch: large enough that handing a batch over costs little per line.
const BATCH_LINES: usize = 1024;
/// Bytes after which a batch is handed over even with fewer lines (long lines, long proofs).
const BATCH_BYTES: usize = 1 << 20;
/// Batches out at once: every worker busy, one more being read and one being checked.
const IN_FLIGHT: usize = 6;

/// One line of an export, taken apart.
pub(super) enum Parsed {
    /// Longer than [`MAX_LINE`]; its bytes were not kept.
    TooLong,
    /// Reading the line failed: reported once every line before it is checked.
    Unreadable(std::io::Error),
    /// The worker taking the line's batch apart failed (a bug): the verification stops.
    WorkerFailed,
    /// The line could not be split into its head and envelope.
    Malformed(String),
    Line(Box<ParsedLine>),
}

/// A line whose head was read.
pub(super) struct ParsedLine {
    /// The position the line's head states.
    pub position: u64,
    /// The recorded leaf hash; `None` when it is not hex SHA-256.
    pub recorded: Option<[u8; 32]>,
    /// SHA-256(0x00 || envelope) of the envelope's exact bytes.
    pub computed: [u8; 32],
    /// The inclusion proof, when the line has one: its hashes, or `Err` when one is not hex.
    pub proof: Option<Result<Vec<[u8; 32]>, ()>>,
    /// The envelope's fields, or why they could not be read.
    pub fields: Result<EnvelopeFields<'static>, String>,
    /// The envelope's bytes, kept only for the ledger's own checkpoints (whose payload is read).
    pub checkpoint_envelope: Option<Vec<u8>>,
}

/// A batch of lines as read: their bytes back to back, and where each line lies in them.
struct Batch {
    bytes: Vec<u8>,
    lines: Vec<Entry>,
}

/// One line of a batch, or what ended the input there.
enum Entry {
    Line(Range<usize>),
    TooLong,
    Unreadable(std::io::Error),
}

/// Reads every remaining line of `reader`, takes each apart on worker threads, and calls
/// `check` on each in order, stopping at the first error it returns.
pub(super) fn for_each_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    mut check: impl FnMut(Parsed) -> Result<(), VerifyError>,
) -> Result<(), VerifyError> {
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).clamp(1, 4);
    std::thread::scope(|scope| {
        let (work, queue) = sync_channel::<(u64, Batch)>(IN_FLIGHT);
        let (done, results) = sync_channel::<(u64, Vec<Parsed>)>(IN_FLIGHT);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..workers {
            let (queue, done) = (Arc::clone(&queue), done.clone());
            scope.spawn(move || take_apart(&queue, &done));
        }
        drop(done);
        // On return (an error included) `work` and `results` are dropped here, before the scope
        // joins the workers: they see the closed channels and stop.
        in_order(reader, buf, &work, &results, &mut check)
    })
}

/// The calling thread's part: reads batches, keeps [`IN_FLIGHT`] of them with the workers, and
/// checks the results in the order the lines were read.
fn in_order(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    work: &SyncSender<(u64, Batch)>,
    results: &Receiver<(u64, Vec<Parsed>)>,
    check: &mut impl FnMut(Parsed) -> Result<(), VerifyError>,
) -> Result<(), VerifyError> {
    let (mut sent, mut next) = (0u64, 0u64);
    let mut arrived: BTreeMap<u64, Vec<Parsed>> = BTreeMap::new();
    let mut exhausted = false;
    // A line read that did not fit its batch: the next batch starts with it.
    let mut carried: Option<Vec<u8>> = None;
    loop {
        while !exhausted && sent - next < IN_FLIGHT as u64 {
            let (batch, end) = read_batch(reader, buf, &mut carried);
            exhausted = end;
            if batch.lines.is_empty() {
                break;
            }
            // The workers only stop when this thread drops the channels, so a send cannot fail.
            work.send((sent, batch)).map_err(|_| worker_lost())?;
            sent += 1;
        }
        if next == sent {
            return Ok(());
        }
        let parsed = loop {
            if let Some(parsed) = arrived.remove(&next) {
                break parsed;
            }
            let (sequence, parsed) = results.recv().map_err(|_| worker_lost())?;
            arrived.insert(sequence, parsed);
        };
        next += 1;
        for line in parsed {
            check(line)?;
        }
    }
}

/// A worker that stopped or failed without answering: only a panic in a worker, which is a bug.
pub(super) fn worker_lost() -> VerifyError {
    VerifyError::Read(std::io::Error::other("a verification worker stopped"))
}

/// Reads up to a batch of lines: at most [`BATCH_LINES`], and at most [`BATCH_BYTES`] unless its
/// one line is longer (a line that would take a batch over is carried to the next one). Also
/// says whether the input ended; a read failure ends it, as an entry of the batch.
fn read_batch(reader: &mut impl BufRead, buf: &mut Vec<u8>, carried: &mut Option<Vec<u8>>) -> (Batch, bool) {
    let mut batch = Batch { bytes: Vec::with_capacity(BATCH_BYTES / 4), lines: Vec::with_capacity(BATCH_LINES) };
    let add = |batch: &mut Batch, line: &[u8]| {
        let start = batch.bytes.len();
        batch.bytes.extend_from_slice(line);
        batch.lines.push(Entry::Line(start..batch.bytes.len()));
    };
    if let Some(line) = carried.take() {
        add(&mut batch, &line);
    }
    while batch.lines.len() < BATCH_LINES {
        match line::next_line(reader, buf) {
            Err(error) => {
                batch.lines.push(Entry::Unreadable(error));
                return (batch, true);
            }
            Ok(LineRead::End) => return (batch, true),
            // The rest of an over-long line is never read: nothing after it is checked.
            Ok(LineRead::TooLong) => {
                batch.lines.push(Entry::TooLong);
                return (batch, true);
            }
            Ok(LineRead::Line) if !batch.lines.is_empty() && batch.bytes.len() + buf.len() > BATCH_BYTES => {
                *carried = Some(std::mem::take(buf));
                return (batch, false);
            }
            Ok(LineRead::Line) => add(&mut batch, buf),
        }
    }
    (batch, false)
}

/// A worker: takes batches apart until the queue closes or nobody waits for the results.
fn take_apart(queue: &Mutex<Receiver<(u64, Batch)>>, done: &SyncSender<(u64, Vec<Parsed>)>) {
    let mut scratch = Vec::new();
    loop {
        let next = queue.lock().map(|queue| queue.recv());
        let Ok(Ok((sequence, batch))) = next else { return };
        let Batch { bytes, lines } = batch;
        // A panic here is a bug; it must stop the verification with an error, never leave the
        // checking thread waiting for a batch that will not come.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lines
                .into_iter()
                .map(|entry| match entry {
                    Entry::Line(range) => parse(&bytes[range], &mut scratch),
                    Entry::TooLong => Parsed::TooLong,
                    Entry::Unreadable(error) => Parsed::Unreadable(error),
                })
                .collect()
        }))
        .unwrap_or_else(|_| vec![Parsed::WorkerFailed]);
        // Long lines leave a long scratch buffer behind: give it back.
        if scratch.capacity() > BATCH_BYTES {
            scratch = Vec::new();
        }
        if done.send((sequence, parsed)).is_err() {
            return;
        }
    }
}

/// Takes one line apart.
fn parse(bytes: &[u8], scratch: &mut Vec<u8>) -> Parsed {
    let (head, envelope) = match line::split(bytes, scratch) {
        Ok(split) => split,
        Err(reason) => return Parsed::Malformed(reason),
    };
    let proof =
        head.inclusion_proof.as_ref().map(|hashes| hashes.iter().map(|hash| line::hash(hash).ok_or(())).collect());
    let fields = EnvelopeFields::decode(envelope);
    let checkpoint_envelope = match &fields {
        Ok(fields) if fields.is_checkpoint() => Some(envelope.to_vec()),
        _ => None,
    };
    Parsed::Line(Box::new(ParsedLine {
        position: head.position,
        recorded: line::hash(head.leaf_hash),
        computed: leaf_hash(envelope),
        proof,
        fields: fields.map(EnvelopeFields::into_owned),
        checkpoint_envelope,
    }))
}

/// The message of a line whose bytes were not kept.
pub(super) fn too_long() -> String {
    format!("it is longer than {} MiB", MAX_LINE >> 20)
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};

    use super::*;

    /// Gives `data`, then fails every read.
    struct FailsAfter {
        data: std::io::Cursor<Vec<u8>>,
    }

    impl Read for FailsAfter {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            match self.data.read(out)? {
                0 => Err(std::io::Error::other("the disk went away")),
                read => Ok(read),
            }
        }
    }

    /// What `for_each_line` hands over, one word per line, until `check` stops it.
    fn checked(reader: impl Read, stop_at: Option<usize>) -> (Vec<String>, Result<(), VerifyError>) {
        let mut seen = Vec::new();
        let result = for_each_line(&mut BufReader::new(reader), &mut Vec::new(), |parsed| {
            seen.push(match parsed {
                Parsed::Malformed(_) => "malformed".to_owned(),
                Parsed::Line(line) => format!("line {}", line.position),
                Parsed::TooLong => "too long".to_owned(),
                Parsed::Unreadable(_) => return Err(VerifyError::Read(std::io::Error::other("unreadable"))),
                Parsed::WorkerFailed => "failed".to_owned(),
            });
            match stop_at {
                Some(stop) if seen.len() == stop => Err(VerifyError::Header("stopped".to_owned())),
                _ => Ok(()),
            }
        });
        (seen, result)
    }

    fn lines(count: usize, pad: usize) -> Vec<u8> {
        let (hash, padding) = ("0".repeat(64), "p".repeat(pad));
        let mut out = Vec::new();
        for position in 1..=count {
            out.extend_from_slice(
                format!("{{\"position\":{position},\"leafHash\":\"{hash}\",\"envelope\":{{\"x\":\"{padding}\"}}}}\n")
                    .as_bytes(),
            );
        }
        out
    }

    #[test]
    fn every_line_comes_back_in_order_however_the_batches_are_cut() {
        // Batches are cut by count (small lines) and by bytes (lines of 300 KiB).
        for (count, pad) in [(5_000, 10), (9, 300 << 10)] {
            let (seen, result) = checked(std::io::Cursor::new(lines(count, pad)), None);
            result.unwrap();
            assert_eq!(seen, (1..=count).map(|position| format!("line {position}")).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_read_failure_is_reported_after_every_line_before_it_and_never_before_an_earlier_fault() {
        let (seen, result) = checked(FailsAfter { data: std::io::Cursor::new(lines(3_000, 10)) }, None);
        assert_eq!(seen.len(), 3_000, "every line read before the failure is checked first");
        assert!(matches!(result, Err(VerifyError::Read(_))), "{result:?}");
        // A fault found on line 10 wins over the read failure thousands of lines later.
        let (seen, result) = checked(FailsAfter { data: std::io::Cursor::new(lines(3_000, 10)) }, Some(10));
        assert_eq!(seen.len(), 10);
        assert!(matches!(result, Err(VerifyError::Header(_))), "{result:?}");
    }
}
