//! Order-book continuity: per `orderbook.*` topic ([`crate::wire::is_orderbook`]), the last
//! `data.u` seen (located by the frame's one parse, [`crate::wire::DataHead::u`]).
//!
//! `type=snapshot` (or `u == 1`, Bybit's service-restart snapshot) resets the book; a delta
//! whose `u` is not last + 1 is a gap. After a gap the topic's frames are dropped until a fresh
//! snapshot arrives (the connection resubscribes only that topic to get one). State belongs to
//! one connection session and is cleared on reconnect.

use std::collections::HashMap;

/// What to do with one order-book frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookVerdict {
    /// In sequence: emit it.
    Pass,
    /// A snapshot after a gap: emit it; the topic is in sync again.
    Resynced,
    /// `u` skipped: drop this frame and resubscribe the topic.
    Gap { expected: u64, got: u64 },
    /// Waiting for the snapshot after a gap: drop.
    Drop,
}

#[derive(Debug, Clone, Copy)]
enum Book {
    InSync(u64),
    Resyncing,
}

/// Gap tracker for every order-book topic of one connection.
#[derive(Debug, Default)]
pub struct GapTracker {
    books: HashMap<String, Book>,
}

impl GapTracker {
    /// Judges one frame of `topic` with Bybit `type` `kind` and update id `u`.
    pub fn observe(&mut self, topic: &str, kind: Option<&str>, u: u64) -> BookVerdict {
        let reset = kind == Some("snapshot") || u == 1;
        let Some(book) = self.books.get_mut(topic) else {
            // First frame of the topic this session: Bybit sends a snapshot first; a delta is
            // accepted as the starting point rather than resubscribing in a loop.
            self.books.insert(topic.to_owned(), Book::InSync(u));
            return BookVerdict::Pass;
        };
        match (*book, reset) {
            (Book::Resyncing, true) => {
                *book = Book::InSync(u);
                BookVerdict::Resynced
            }
            (Book::Resyncing, false) => BookVerdict::Drop,
            (Book::InSync(_), true) => {
                *book = Book::InSync(u);
                BookVerdict::Pass
            }
            (Book::InSync(last), false) if u == last.wrapping_add(1) => {
                *book = Book::InSync(u);
                BookVerdict::Pass
            }
            (Book::InSync(last), false) => {
                *book = Book::Resyncing;
                BookVerdict::Gap {
                    expected: last.wrapping_add(1),
                    got: u,
                }
            }
        }
    }

    /// Whether `topic` waits for a fresh snapshot.
    pub fn is_resyncing(&self, topic: &str) -> bool {
        matches!(self.books.get(topic), Some(Book::Resyncing))
    }

    /// Forgets a topic (unsubscribed).
    pub fn forget(&mut self, topic: &str) {
        self.books.remove(topic);
    }

    /// Forgets everything (new session).
    pub fn clear(&mut self) {
        self.books.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_data;

    fn recording(name: &str) -> Vec<String> {
        let path = format!("{}/tests/fixtures/bybit/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn judge(tracker: &mut GapTracker, text: &str) -> BookVerdict {
        let head = parse_data(text).expect("a data frame");
        tracker.observe(head.topic(text), head.kind(text), head.u.expect("data.u"))
    }

    #[test]
    fn real_recordings_have_no_gaps() {
        for name in [
            "recording_linear_orderbook500_XRPUSDT.jsonl",
            "recording_spot_orderbook50_BTCUSDT.jsonl",
            "recording_linear_orderbook1_BTCUSDT_unattributed.jsonl",
        ] {
            let mut t = GapTracker::default();
            for line in recording(name) {
                assert_eq!(judge(&mut t, &line), BookVerdict::Pass, "{name}");
            }
        }
    }

    #[test]
    fn a_skipped_delta_is_a_gap_and_frames_drop_until_the_next_snapshot() {
        let lines = recording("recording_linear_orderbook500_XRPUSDT.jsonl");
        let mut t = GapTracker::default();
        assert_eq!(judge(&mut t, &lines[0]), BookVerdict::Pass);
        assert_eq!(judge(&mut t, &lines[1]), BookVerdict::Pass);
        assert!(matches!(judge(&mut t, &lines[3]), BookVerdict::Gap { .. }));
        assert!(t.is_resyncing("orderbook.500.XRPUSDT"));
        assert_eq!(judge(&mut t, &lines[4]), BookVerdict::Drop);
        assert_eq!(judge(&mut t, &lines[0]), BookVerdict::Resynced);
        assert_eq!(judge(&mut t, &lines[1]), BookVerdict::Pass);
    }

    #[test]
    fn u_equal_one_resets_like_a_snapshot() {
        let mut t = GapTracker::default();
        assert_eq!(
            t.observe("orderbook.1.X", Some("snapshot"), 10),
            BookVerdict::Pass
        );
        assert_eq!(
            t.observe("orderbook.1.X", Some("delta"), 1),
            BookVerdict::Pass
        );
        assert_eq!(
            t.observe("orderbook.1.X", Some("delta"), 2),
            BookVerdict::Pass
        );
        assert!(matches!(
            t.observe("orderbook.1.X", Some("delta"), 2),
            BookVerdict::Gap {
                expected: 3,
                got: 2
            }
        ));
    }
}
