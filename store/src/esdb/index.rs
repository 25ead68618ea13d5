//! The in-memory index of the committed ledger: what admission and `read_stream` need that one
//! EventStoreDB stream cannot answer by itself (each credledger stream's versions and positions,
//! each organization's last sequence number, where each event id sits).
//!
//! It is built at open by reading the ledger stream from the start and kept current by the
//! writer (its own commits) and the follower (everyone's commits). Entries are applied strictly
//! in position order, so the index is always the ledger's first `head` events; an event that does
//! not continue it (a missing revision, a version or sequence out of step, an id seen before)
//! marks the index damaged, and from then on the store refuses appends.

use std::collections::HashMap;

use credledger_domain::{EventId, OrgId};
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::batch::{Committed, Recorded};

/// The metadata stored beside each envelope, so that indexing needs no envelope decoding and a
/// raw export has the leaf hash as it was computed at append.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LedgerMetadata {
    pub leaf_hash: String,
    pub stream: String,
    pub version: u64,
    pub org_id: Option<OrgId>,
    pub org_sequence: Option<u64>,
}

/// One event as the index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub position: u64,
    pub event_id: EventId,
    pub event_type: String,
    pub stream: String,
    pub version: u64,
    pub org: Option<(OrgId, u64)>,
}

impl Entry {
    /// The entry for an event read from the ledger stream.
    pub(super) fn from_stored(event: &eventstore::RecordedEvent) -> Result<Self, StoreError> {
        let position = event.revision + 1;
        let corrupt = |reason: String| StoreError::Corrupt { position, reason };
        let metadata: LedgerMetadata = serde_json::from_slice(&event.custom_metadata)
            .map_err(|error| corrupt(format!("the event's ledger metadata does not decode: {error}")))?;
        let org = match (metadata.org_id, metadata.org_sequence) {
            (Some(org), Some(sequence)) => Some((org, sequence)),
            (None, None) => None,
            _ => return Err(corrupt("the metadata has an organization without a sequence or back".to_owned())),
        };
        Ok(Self {
            position,
            event_id: EventId::from_uuid(event.id),
            event_type: event.event_type.clone(),
            stream: metadata.stream,
            version: metadata.version,
            org,
        })
    }
}

#[derive(Debug, Default)]
pub(super) struct Index {
    /// The last position applied.
    head: u64,
    /// Each credledger stream's positions, by version.
    streams: HashMap<String, Vec<u64>>,
    /// Each organization's last sequence number.
    orgs: HashMap<OrgId, u64>,
    events: HashMap<EventId, Recorded>,
    /// Why the index stopped following the ledger, once it has.
    damage: Option<String>,
}

impl Index {
    pub(super) fn head(&self) -> u64 {
        self.head
    }

    pub(super) fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// Applies the next event of the ledger. Returns whether the index moved: an event at or
    /// below the head is one already applied (the writer and the follower both see each commit)
    /// and is only checked. Once damaged, the index moves no more.
    pub(super) fn apply(&mut self, entry: Entry) -> bool {
        if self.damage.is_some() {
            return false;
        }
        match self.check(&entry) {
            Ok(false) => false,
            Ok(true) => {
                self.head = entry.position;
                self.streams.entry(entry.stream.clone()).or_default().push(entry.position);
                if let Some((org, sequence)) = entry.org {
                    self.orgs.insert(org, sequence);
                }
                let recorded = Recorded {
                    position: entry.position,
                    stream: entry.stream,
                    version: entry.version,
                    event_type: entry.event_type,
                };
                self.events.insert(entry.event_id, recorded);
                true
            }
            Err(reason) => {
                self.mark_damaged(entry.position, &reason);
                false
            }
        }
    }

    /// Marks the index damaged at `position`: appends are refused from now on.
    pub(super) fn mark_damaged(&mut self, position: u64, reason: &str) {
        if self.damage.is_none() {
            tracing::error!(position, reason, "the EventStoreDB ledger stream does not continue the log");
            self.damage = Some(format!("the EventStoreDB ledger stream is damaged at position {position}: {reason}"));
        }
    }

    /// `Ok(true)` when `entry` continues the index, `Ok(false)` when it is already applied.
    fn check(&self, entry: &Entry) -> Result<bool, String> {
        if entry.position <= self.head {
            return match self.events.get(&entry.event_id) {
                Some(recorded) if recorded.position == entry.position => Ok(false),
                _ => Err("another event than the one indexed at this position".to_owned()),
            };
        }
        if entry.position != self.head + 1 {
            return Err(format!("positions {} to {} are missing", self.head + 1, entry.position - 1));
        }
        if let Some(recorded) = self.events.get(&entry.event_id) {
            return Err(format!("event {} is already recorded at position {}", entry.event_id, recorded.position));
        }
        let version = self.streams.get(&entry.stream).map_or(0, |positions| positions.len() as u64);
        if entry.version != version {
            return Err(format!(
                "stream `{}` is at version {} but the event says {version}",
                entry.stream, entry.version
            ));
        }
        if let Some((org, sequence)) = entry.org {
            let expected = self.orgs.get(&org).copied().unwrap_or(0) + 1;
            if sequence != expected {
                return Err(format!("organization {org} continues at sequence {expected}, not {sequence}"));
            }
        }
        Ok(true)
    }

    /// The positions of `stream`'s events with version `>= from_version`, in version order.
    pub(super) fn positions(&self, stream: &str, from_version: u64) -> Vec<u64> {
        let positions = self.streams.get(stream).map_or(&[][..], Vec::as_slice);
        let from = usize::try_from(from_version).unwrap_or(usize::MAX).min(positions.len());
        positions[from..].to_vec()
    }

    /// Where those of `event_ids` that the ledger already holds sit.
    pub(super) fn recorded(&self, event_ids: impl Iterator<Item = EventId>) -> HashMap<EventId, Recorded> {
        event_ids.filter_map(|id| self.events.get(&id).map(|recorded| (id, recorded.clone()))).collect()
    }
}

/// The index answers admission from memory: it cannot fail.
impl Committed for Index {
    fn stream_version(&mut self, stream: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.streams.get(stream).and_then(|positions| (positions.len() as u64).checked_sub(1)))
    }

    fn org_sequence(&mut self, org: OrgId) -> Result<u64, StoreError> {
        Ok(self.orgs.get(&org).copied().unwrap_or(0))
    }

    fn last_position(&mut self, stream: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.streams.get(stream).and_then(|positions| positions.last().copied()))
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn org(n: u128) -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(n))
    }

    fn entry(position: u64, stream: &str, version: u64, org: Option<(OrgId, u64)>) -> Entry {
        Entry {
            position,
            event_id: EventId::from_uuid(Uuid::from_u128(u128::from(position))),
            event_type: "IndexChecked".to_owned(),
            stream: stream.to_owned(),
            version,
            org,
        }
    }

    fn sample() -> Index {
        let mut index = Index::default();
        for entry in [
            entry(1, "mt-1", 0, Some((org(1), 1))),
            entry(2, "usage-1", 0, None),
            entry(3, "mt-1", 1, Some((org(1), 2))),
            entry(4, "org-2", 0, Some((org(2), 1))),
        ] {
            assert!(index.apply(entry));
        }
        index
    }

    #[test]
    fn committed_answers_come_from_the_applied_events() {
        let mut index = sample();
        assert_eq!(index.head(), 4);
        assert_eq!(index.stream_version("mt-1").unwrap(), Some(1));
        assert_eq!(index.stream_version("usage-1").unwrap(), Some(0));
        assert_eq!(index.stream_version("mt-2").unwrap(), None);
        assert_eq!(index.org_sequence(org(1)).unwrap(), 2);
        assert_eq!(index.org_sequence(org(2)).unwrap(), 1);
        assert_eq!(index.org_sequence(org(3)).unwrap(), 0);
        assert_eq!(index.positions("mt-1", 0), [1, 3]);
        assert_eq!(index.positions("mt-1", 1), [3]);
        assert!(index.positions("mt-1", 2).is_empty() && index.positions("mt-1", u64::MAX).is_empty());
        assert!(index.positions("nothing", 0).is_empty());

        let ids = [1u128, 3, 99].map(|n| EventId::from_uuid(Uuid::from_u128(n)));
        let recorded = index.recorded(ids.into_iter());
        assert_eq!(recorded.len(), 2);
        let third = &recorded[&ids[1]];
        assert_eq!((third.position, third.stream.as_str(), third.version), (3, "mt-1", 1));
    }

    #[test]
    fn an_event_seen_twice_is_applied_once() {
        let mut index = sample();
        assert!(!index.apply(entry(3, "mt-1", 1, Some((org(1), 2)))), "the writer and the follower both apply it");
        assert!(index.apply(entry(5, "mt-1", 2, Some((org(1), 3)))));
        assert_eq!((index.head(), index.damage()), (5, None));
    }

    #[test]
    fn an_event_that_does_not_continue_the_log_damages_the_index() {
        let cases = [
            entry(6, "mt-1", 2, None),                       // a gap: 5 is missing
            entry(5, "mt-1", 1, None),                       // a version taken twice
            entry(5, "mt-1", 3, None),                       // a version skipped
            entry(5, "org-2", 1, Some((org(2), 3))),         // a sequence skipped
            entry(5, "org-2", 1, Some((org(1), 2))),         // a sequence taken twice
            Entry { position: 5, ..entry(2, "x", 0, None) }, // an id recorded before
            Entry { event_id: EventId::from_uuid(Uuid::from_u128(77)), ..entry(3, "mt-1", 1, None) }, // rewritten
        ];
        for case in cases {
            let mut index = sample();
            assert!(!index.apply(case.clone()), "{case:?}");
            assert!(index.damage().is_some(), "{case:?}");
            assert!(!index.apply(entry(5, "new", 0, None)), "a damaged index stays where it was");
            assert_eq!(index.head(), 4);
        }
    }

    #[test]
    fn stored_metadata_gives_the_entry() {
        let metadata = LedgerMetadata {
            leaf_hash: "00".repeat(32),
            stream: "mt-9".to_owned(),
            version: 4,
            org_id: Some(org(9)),
            org_sequence: Some(12),
        };
        let event = eventstore::RecordedEvent {
            stream_id: "credledger-ledger".to_owned(),
            id: Uuid::from_u128(5),
            revision: 41,
            event_type: "MachineTokenRolled".to_owned(),
            data: bytes::Bytes::from_static(b"{}"),
            metadata: HashMap::new(),
            custom_metadata: serde_json::to_vec(&metadata).unwrap().into(),
            is_json: true,
            position: eventstore::Position { commit: 0, prepare: 0 },
            created: std::time::SystemTime::UNIX_EPOCH.into(),
        };
        let entry = Entry::from_stored(&event).unwrap();
        assert_eq!(
            entry,
            Entry {
                position: 42,
                event_id: EventId::from_uuid(Uuid::from_u128(5)),
                event_type: "MachineTokenRolled".to_owned(),
                stream: "mt-9".to_owned(),
                version: 4,
                org: Some((org(9), 12)),
            }
        );
        let foreign = eventstore::RecordedEvent { custom_metadata: bytes::Bytes::new(), ..event };
        assert!(matches!(Entry::from_stored(&foreign), Err(StoreError::Corrupt { position: 42, .. })));
    }
}
