//! The events this process committed last, kept as they would be decoded, for its own
//! subscriptions.
//!
//! A subscription of the process that wrote an event (the projection runner, the process
//! managers) would otherwise read it back from the log and parse its envelope, once per
//! subscriber, moments after the writer held every field of it. The writer publishes each
//! committed batch here before it publishes the new head; a page that lies inside the window is
//! served from memory, anything older (catching up, a restart, another process's events) is read
//! from the log as before. The window holds consecutive positions only: a batch that does not
//! continue it (another process wrote in between, or an import) starts it over.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::RecordedEvent;

/// Events kept: a few group commits' worth, far more than a live subscription lags behind.
const WINDOW: usize = 4096;

/// Envelope bytes kept at most: the window also never holds more than this, whatever its events
/// weigh (an event is held about twice over: its envelope and its decoded payload).
const WINDOW_BYTES: usize = 16 << 20;

/// An event with a larger envelope (a secrets version with a large set) is not kept: it breaks
/// the window, and subscriptions read it from the log.
const LARGEST_EVENT: usize = 64 << 10;

#[derive(Debug, Default)]
pub(crate) struct Recent {
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    events: VecDeque<RecordedEvent>,
    /// The envelope bytes of `events`.
    bytes: usize,
}

impl Window {
    fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

impl Recent {
    /// Adds a committed batch, in position order. Call before the head that covers it is
    /// published, so that a subscription woken by the head finds it here.
    pub(crate) fn publish(&self, batch: Vec<RecordedEvent>) {
        let mut window = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in batch {
            if window.events.back().is_some_and(|last| last.position + 1 != event.position) {
                window.clear();
            }
            let size = event.envelope.len();
            if size > LARGEST_EVENT {
                window.clear();
                continue;
            }
            while window.events.len() == WINDOW || (window.bytes + size > WINDOW_BYTES && !window.events.is_empty()) {
                if let Some(oldest) = window.events.pop_front() {
                    window.bytes -= oldest.envelope.len();
                }
            }
            window.bytes += size;
            window.events.push_back(event);
        }
    }

    /// Forgets the window: the log was written other than through a batch of this process.
    pub(crate) fn clear(&self) {
        self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// Up to `limit` events from `from_position`, when the window starts at or before it and
    /// holds it; `None` sends the caller to the log.
    pub(crate) fn page(&self, from_position: u64, limit: usize) -> Option<Vec<RecordedEvent>> {
        let window = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let events = &window.events;
        let first = events.front()?.position;
        let skip = usize::try_from(from_position.checked_sub(first)?).ok()?;
        if skip >= events.len() {
            return None;
        }
        Some(events.iter().skip(skip).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded_at(position: u64) -> RecordedEvent {
        let envelope = format!(
            r#"{{"position":{position},"stream":"s","version":{version},"eventId":"{id}","type":"T","schemaVersion":1,"occurredAt":"2026-01-01T00:00:00Z","recordedAt":"2026-01-01T00:00:00Z","actor":{{"kind":"system","id":"x"}},"payload":{{}}}}"#,
            version = position - 1,
            id = uuid::Uuid::from_u128(u128::from(position)),
        );
        RecordedEvent::from_envelope(envelope.as_bytes()).unwrap()
    }

    #[test]
    fn a_page_is_served_only_from_inside_a_window_of_consecutive_positions() {
        let recent = Recent::default();
        assert!(recent.page(1, 10).is_none());
        recent.publish((1..=3).map(recorded_at).collect());
        let positions =
            |page: Option<Vec<RecordedEvent>>| page.map(|p| p.iter().map(|e| e.position).collect::<Vec<_>>());
        assert_eq!(positions(recent.page(2, 10)), Some(vec![2, 3]));
        assert_eq!(positions(recent.page(1, 2)), Some(vec![1, 2]));
        assert_eq!(positions(recent.page(4, 10)), None, "not committed yet: the log decides");
        // A batch that does not continue the window (another writer wrote 4..=6) starts it over.
        recent.publish((7..=8).map(recorded_at).collect());
        assert_eq!(positions(recent.page(3, 10)), None);
        assert_eq!(positions(recent.page(7, 10)), Some(vec![7, 8]));
        assert_eq!(positions(recent.page(6, 10)), None, "before the window: read from the log");
        recent.publish((9..=(8 + WINDOW as u64)).map(recorded_at).collect());
        assert_eq!(positions(recent.page(8, 1)), None, "fallen out of the window");
        assert_eq!(positions(recent.page(9, 1)), Some(vec![9]));
        recent.clear();
        assert_eq!(positions(recent.page(9, 1)), None);
    }

    #[test]
    fn the_window_holds_a_bounded_number_of_bytes_and_no_large_event() {
        let sized = |position: u64, bytes: usize| {
            let mut event = recorded_at(position);
            event.envelope = vec![b' '; bytes].into();
            event
        };
        let recent = Recent::default();
        let positions =
            |page: Option<Vec<RecordedEvent>>| page.map(|p| p.iter().map(|e| e.position).collect::<Vec<_>>());
        // 512 events of 48 KiB weigh 24 MiB: only the newest 16 MiB stay.
        recent.publish((1..=512).map(|position| sized(position, 48 << 10)).collect());
        let kept = WINDOW_BYTES / (48 << 10);
        let first = 512 - kept as u64 + 1;
        assert_eq!(positions(recent.page(first - 1, 1)), None);
        assert_eq!(positions(recent.page(first, 1)), Some(vec![first]));
        // A large event is never kept: the window starts again after it.
        recent.publish(vec![sized(513, LARGEST_EVENT + 1), sized(514, 10)]);
        assert_eq!(positions(recent.page(512, 10)), None);
        assert_eq!(positions(recent.page(513, 10)), None, "read from the log");
        assert_eq!(positions(recent.page(514, 10)), Some(vec![514]));
    }
}
