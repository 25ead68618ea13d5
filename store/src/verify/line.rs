//! Reading an export line by line: the header, each line's fixed head (`position`, `leafHash`,
//! `inclusionProof`), the exact envelope bytes after it, and the few envelope fields the checks
//! need. Nothing here trusts a line to be well formed: every failure is a message, never a panic.

use std::borrow::Cow;
use std::io::{BufRead, Read};

use credledger_domain::OrgId;
use serde::Deserialize;

/// The longest line read (a header with its note, or an event with its proof): a longer one is
/// refused instead of being buffered, so a hostile export cannot exhaust memory.
pub(super) const MAX_LINE: u64 = 16 << 20;

/// What separates a line's head from its envelope. The head holds only numbers and hex strings,
/// so the first occurrence is the separator whatever bytes the envelope holds.
const ENVELOPE_KEY: &[u8] = b",\"envelope\":";

/// Reads the next line into `buf` (without its `\n`); `Ok(false)` at the end of the input.
pub(super) fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<LineRead> {
    buf.clear();
    let read = reader.by_ref().take(MAX_LINE + 1).read_until(b'\n', buf)?;
    if read == 0 {
        return Ok(LineRead::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() as u64 > MAX_LINE {
        return Ok(LineRead::TooLong);
    }
    Ok(LineRead::Line)
}

/// What [`next_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LineRead {
    Line,
    TooLong,
    End,
}

/// Line 1 of an export.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Header {
    pub format: String,
    pub version: u32,
    pub scope: String,
    #[serde(default)]
    pub org_id: Option<String>,
    pub tree_size: u64,
    pub root_hash: String,
    pub checkpoint: String,
}

/// The fields of a line before its envelope.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LineHead<'a> {
    pub position: u64,
    #[serde(borrow)]
    pub leaf_hash: &'a str,
    #[serde(default, borrow)]
    pub inclusion_proof: Option<Vec<&'a str>>,
}

/// Splits a line into its head (parsed) and the exact envelope bytes. `scratch` is reused
/// between lines to hold the head as a JSON object.
pub(super) fn split<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<(LineHead<'a>, &'a [u8]), String> {
    let at = line
        .windows(ENVELOPE_KEY.len())
        .position(|window| window == ENVELOPE_KEY)
        .ok_or("the line has no `\"envelope\":` field")?;
    let envelope = line[at + ENVELOPE_KEY.len()..]
        .strip_suffix(b"}")
        .ok_or("the line does not end with `}` after the envelope")?;
    scratch.clear();
    scratch.extend_from_slice(&line[..at]);
    scratch.push(b'}');
    let scratch: &'a [u8] = scratch;
    let head: LineHead<'a> = serde_json::from_slice(scratch).map_err(|error| format!("the line's head: {error}"))?;
    Ok((head, envelope))
}

/// A hex SHA-256 hash.
pub(super) fn hash(hex_text: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut hash).ok().map(|()| hash)
}

/// The envelope fields the checks need; the rest (payload included) is skipped, not decoded.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EnvelopeFields<'a> {
    pub position: u64,
    #[serde(borrow)]
    pub stream: Cow<'a, str>,
    pub version: u64,
    pub org_id: Option<OrgId>,
    pub org_sequence: Option<u64>,
    #[serde(rename = "type", borrow)]
    pub event_type: Cow<'a, str>,
}

impl<'a> EnvelopeFields<'a> {
    pub(super) fn decode(envelope: &'a [u8]) -> Result<Self, String> {
        serde_json::from_slice(envelope).map_err(|error| error.to_string())
    }

    /// The same fields, no longer borrowing the line: they can cross threads.
    pub(super) fn into_owned(self) -> EnvelopeFields<'static> {
        EnvelopeFields {
            position: self.position,
            stream: Cow::Owned(self.stream.into_owned()),
            version: self.version,
            org_id: self.org_id,
            org_sequence: self.org_sequence,
            event_type: Cow::Owned(self.event_type.into_owned()),
        }
    }

    /// Whether this is one of the ledger's own signed checkpoints.
    pub(super) fn is_checkpoint(&self) -> bool {
        self.stream == "ledger" && self.event_type == "CheckpointSigned"
    }
}

/// The payload of a `CheckpointSigned` event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckpointPayload {
    pub tree_size: u64,
    pub root_hash: String,
    pub note: String,
}

impl CheckpointPayload {
    pub(super) fn decode(envelope: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Outer {
            payload: CheckpointPayload,
        }
        serde_json::from_slice::<Outer>(envelope).map(|outer| outer.payload).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_splits_at_the_first_envelope_key_and_keeps_the_bytes() {
        let line = br#"{"position":3,"leafHash":"ab","envelope":{"x":",\"envelope\":1"}}"#;
        let mut scratch = Vec::new();
        let (head, envelope) = split(line, &mut scratch).unwrap();
        assert_eq!((head.position, head.leaf_hash, head.inclusion_proof), (3, "ab", None));
        assert_eq!(envelope, br#"{"x":",\"envelope\":1"}"#);
    }

    #[test]
    fn damaged_lines_are_messages_not_panics() {
        let mut scratch = Vec::new();
        for line in [
            &b""[..],
            b"{}",
            b"{\"position\":1,\"leafHash\":\"ab\"}",
            b"{\"position\":-1,\"leafHash\":\"ab\",\"envelope\":{}}",
            b"{\"position\":1,\"leafHash\":\"a\\u0062\",\"envelope\":{}}",
            b"\xff\xfe,\"envelope\":}",
        ] {
            assert!(split(line, &mut scratch).is_err(), "{}", String::from_utf8_lossy(line));
        }
        assert!(EnvelopeFields::decode(b"\xff{").is_err());
        assert_eq!(hash("zz"), None);
        assert_eq!(hash(&"ab".repeat(32)), Some([0xab; 32]));
    }

    #[test]
    fn lines_longer_than_the_limit_are_refused_without_buffering_them() {
        let mut input = std::io::Cursor::new([vec![b'x'; MAX_LINE as usize + 10], b"\nnext\n".to_vec()].concat());
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut input, &mut buf).unwrap(), LineRead::TooLong);
        assert!(buf.len() as u64 <= MAX_LINE + 1);
        let mut input = std::io::Cursor::new(b"a\nb".to_vec());
        assert_eq!(next_line(&mut input, &mut buf).unwrap(), LineRead::Line);
        assert_eq!(buf, b"a");
        assert_eq!(next_line(&mut input, &mut buf).unwrap(), LineRead::Line);
        assert_eq!(buf, b"b");
        assert_eq!(next_line(&mut input, &mut buf).unwrap(), LineRead::End);
    }
}
