//! The envelope: the bytes the log stores for each event, hashes into its leaf, and exports.
//!
//! It is JSON with a fixed field order (the struct's declaration order below), written once by
//! the writer and afterwards only read. Nothing ever re-serialises a decoded envelope to check a
//! hash: the stored bytes are the record. Times are RFC 3339 in UTC.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use credledger_domain::{Actor, EventId, OrgId, RequestMeta};
use serde::{Deserialize, Serialize};

use crate::{RecordedEvent, StoreError};

/// What the writer knows about an event when it serialises it; borrowed so that building a batch
/// copies no payloads.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope<'a> {
    pub position: u64,
    pub stream: &'a str,
    pub version: u64,
    /// Which organization `org_sequence` counts in; an offline verifier needs it to check that
    /// an organization's export is contiguous.
    pub org_id: Option<OrgId>,
    pub org_sequence: Option<u64>,
    pub event_id: EventId,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub schema_version: u32,
    #[serde(with = "credledger_domain::time_format")]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "credledger_domain::time_format")]
    pub recorded_at: DateTime<Utc>,
    pub actor: &'a Actor,
    pub request: Option<&'a RequestMeta>,
    pub payload: &'a serde_json::Value,
}

/// The owned mirror of [`Envelope`], for decoding.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Decoded {
    position: u64,
    stream: String,
    version: u64,
    org_id: Option<OrgId>,
    org_sequence: Option<u64>,
    event_id: EventId,
    #[serde(rename = "type")]
    event_type: String,
    schema_version: u32,
    #[serde(with = "credledger_domain::time_format")]
    occurred_at: DateTime<Utc>,
    #[serde(with = "credledger_domain::time_format")]
    recorded_at: DateTime<Utc>,
    actor: Actor,
    request: Option<RequestMeta>,
    payload: serde_json::Value,
}

impl Envelope<'_> {
    /// The bytes to store and hash. Times are in UTC (`DateTime<Utc>` holds no other offset):
    /// one zone makes exports comparable line by line.
    pub(crate) fn encode(self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self)
    }
}

/// Decodes stored bytes; `leaf_hash` is the hash stored beside them (or computed by a verifier).
pub(crate) fn decode(envelope: Arc<[u8]>, leaf_hash: [u8; 32]) -> Result<RecordedEvent, serde_json::Error> {
    let decoded: Decoded = serde_json::from_slice(&envelope)?;
    Ok(RecordedEvent {
        position: decoded.position,
        stream: decoded.stream,
        version: decoded.version,
        org_sequence: decoded.org_sequence,
        event_id: decoded.event_id,
        event_type: decoded.event_type,
        schema_version: decoded.schema_version,
        org_id: decoded.org_id,
        occurred_at: decoded.occurred_at,
        recorded_at: decoded.recorded_at,
        actor: decoded.actor,
        request: decoded.request,
        payload: decoded.payload,
        leaf_hash,
        envelope,
    })
}

/// Decodes a stored row (its position key, envelope bytes and leaf hash), checking that the
/// envelope decodes and names the row's position: what every backend's reads do.
pub(crate) fn decode_stored(position: i64, envelope: &[u8], leaf_hash: &[u8]) -> Result<RecordedEvent, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { position: u64::try_from(position).unwrap_or(0), reason };
    let leaf_hash: [u8; 32] = leaf_hash.try_into().map_err(|_| corrupt("the leaf hash is not 32 bytes".to_owned()))?;
    let event =
        decode(Arc::from(envelope), leaf_hash).map_err(|error| corrupt(format!("undecodable envelope: {error}")))?;
    if i64::try_from(event.position).ok() != Some(position) {
        return Err(corrupt(format!("the envelope says position {}", event.position)));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Timelike};
    use credledger_domain::ActorKind;
    use uuid::Uuid;

    use super::*;

    fn sample(payload: &serde_json::Value, actor: &Actor, request: &RequestMeta) -> Vec<u8> {
        Envelope {
            position: 7,
            stream: "mt-1",
            version: 2,
            org_id: Some(OrgId::from_uuid(Uuid::from_u128(9))),
            org_sequence: Some(3),
            event_id: EventId::from_uuid(Uuid::from_u128(42)),
            event_type: "MachineTokenDisabled",
            schema_version: 1,
            occurred_at: DateTime::parse_from_rfc3339("2026-06-01T02:00:00.123456789+02:00").unwrap().to_utc(),
            recorded_at: Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 1).unwrap(),
            actor,
            request: Some(request),
            payload,
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn an_event_built_from_its_row_is_the_event_its_envelope_decodes_to() {
        let source = crate::NewEvent {
            event_id: EventId::from_uuid(Uuid::from_u128(42)),
            event_type: "MachineTokenDisabled".to_owned(),
            schema_version: 1,
            org_id: Some(OrgId::from_uuid(Uuid::from_u128(9))),
            occurred_at: DateTime::parse_from_rfc3339("2026-06-01T02:00:00.123456789+02:00").unwrap().to_utc(),
            actor: Actor { kind: ActorKind::Member, id: "m".into() },
            request: Some(RequestMeta { ip: Some("192.0.2.1".into()), user_agent: None, request_id: None }),
            payload: serde_json::json!({"b": 1, "a": [true, null, "x"], "n": -3}),
        };
        let recorded_at = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 1).unwrap().with_nanosecond(500_000_000).unwrap();
        let envelope = Envelope {
            position: 7,
            stream: "mt-1",
            version: 2,
            org_id: source.org_id,
            org_sequence: Some(3),
            event_id: source.event_id,
            event_type: &source.event_type,
            schema_version: source.schema_version,
            occurred_at: source.occurred_at,
            recorded_at,
            actor: &source.actor,
            request: source.request.as_ref(),
            payload: &source.payload,
        }
        .encode()
        .unwrap();
        let row = crate::batch::Row {
            position: 7,
            stream: "mt-1",
            version: 2,
            org_id: source.org_id,
            org_sequence: Some(3),
            event_id: source.event_id,
            event_type: &source.event_type,
            leaf_hash: crate::leaf_hash(&envelope),
            envelope: envelope.clone(),
            source: Some(&source),
            recorded_at,
        };
        let decoded = decode(Arc::from(envelope.as_slice()), crate::leaf_hash(&envelope)).unwrap();
        let built = row.recorded(Arc::from(envelope.as_slice())).unwrap();
        assert_eq!(built, decoded);
    }

    #[test]
    fn fields_are_written_in_the_documented_order() {
        let actor = Actor { kind: ActorKind::Member, id: "m".into() };
        let request = RequestMeta { ip: Some("192.0.2.1".into()), user_agent: None, request_id: Some("r".into()) };
        let bytes = sample(&serde_json::json!({"b": 1, "a": [true]}), &actor, &request);
        let text = String::from_utf8(bytes).unwrap();
        let order = [
            "\"position\":7",
            "\"stream\":",
            "\"version\":2",
            "\"orgId\":",
            "\"orgSequence\":3",
            "\"eventId\":",
            "\"type\":",
            "\"schemaVersion\":1",
            "\"occurredAt\":\"2026-06-01T00:00:00.123456789Z\"",
            "\"recordedAt\":\"2026-06-01T00:00:01Z\"",
            "\"actor\":{\"kind\":\"member\",\"id\":\"m\"}",
            "\"request\":{\"ip\":\"192.0.2.1\",\"userAgent\":null,\"requestId\":\"r\"}",
            "\"payload\":",
        ];
        let offsets: Vec<usize> =
            order.iter().map(|key| text.find(key).unwrap_or_else(|| panic!("{key} in {text}"))).collect();
        assert!(offsets.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
    }

    #[test]
    fn decoding_gives_back_every_field_and_keeps_the_bytes() {
        let actor = Actor::system("sweeper");
        let request = RequestMeta { ip: None, user_agent: Some("curl/8".into()), request_id: None };
        let payload = serde_json::json!({"reason": "owner_removed", "n": 1.5});
        let bytes: Arc<[u8]> = sample(&payload, &actor, &request).into();
        let event = decode(bytes.clone(), [1; 32]).unwrap();
        assert_eq!((event.position, event.stream.as_str(), event.version), (7, "mt-1", 2));
        assert_eq!(event.org_sequence, Some(3));
        assert_eq!(
            event.occurred_at,
            Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap().with_nanosecond(123_456_789).unwrap()
        );
        assert_eq!(event.actor, actor);
        assert_eq!(event.request, Some(request));
        assert_eq!(event.payload, payload);
        assert_eq!(event.envelope, bytes);
        assert_eq!(event.leaf_hash, [1; 32]);
    }

    #[test]
    fn a_year_rfc_3339_cannot_write_is_an_encoding_error() {
        let actor = Actor::system("test");
        let envelope = Envelope {
            position: 1,
            stream: "s",
            version: 0,
            org_id: None,
            org_sequence: None,
            event_id: EventId::from_uuid(Uuid::from_u128(1)),
            event_type: "T",
            schema_version: 1,
            occurred_at: Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            recorded_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            actor: &actor,
            request: None,
            payload: &serde_json::Value::Null,
        };
        assert!(envelope.encode().is_err());
    }
}
