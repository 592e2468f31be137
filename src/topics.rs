//! Topic id → topic name, as the cluster's own Metadata tells them, so that audit and denial
//! lines name a topic by its name when a request names it by id only (Produce v13 from Kafka
//! 4.x Java producers, DeleteTopics v6+).
//!
//! **Fed by the Metadata the proxy already reads.** Every client's Metadata response passes
//! through the proxy to have its broker addresses rewritten; from v10 on it pairs each topic's
//! name with its id, and a client names a topic by id only after such a response told it the
//! id (a producer asks Metadata for a topic before producing to it). Those pairs are noted here
//! ([`crate::kafka::wire::metadata_topic_ids`]), and those of the DescribeTopicPartitions
//! answers relayed (Kafka 4.x admin tools describe topics with it;
//! [`crate::kafka::wire::describe_topic_partitions_ids`]), under the same bounds. The
//! proxy's own discovery rounds ask for no topics: asking for all of them on every round
//! costs a cluster with tens of thousands of topics a multi-megabyte answer per round for a
//! log line, and an id a line meets unknown is shown as such (with its id) rather than
//! delaying the line or the request.
//!
//! **Bounded.** At most [`MAX_TOPIC_IDS`] entries and [`MAX_TOPIC_ID_BYTES`] bytes (each entry
//! counted as its name plus [`ENTRY_OVERHEAD`]); the least recently used entry goes first when
//! either is exceeded. Like the broker table, the resolver's cache and the controllers the
//! scrub knows, it is a fixed bound of its own rather than a charge to the frame budget, which
//! it would hold for the process's lifetime. Every operation is one hash lookup (no scan).
//! Names are the cluster's; they are escaped when they are logged, as every string is.

use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::kafka::requests::{clean_str, uuid_text, NIL_ID};

/// Most topic ids remembered.
pub const MAX_TOPIC_IDS: usize = 65_536;
/// Most bytes the remembered names take, each counted with [`ENTRY_OVERHEAD`].
pub const MAX_TOPIC_ID_BYTES: usize = 8 * 1024 * 1024;
/// What one entry costs besides its name: the id, the name's pointer and length, the cache's
/// links and hash slot.
pub const ENTRY_OVERHEAD: usize = 96;
/// Longest topic name Kafka allows; a longer one is not remembered.
pub const MAX_TOPIC_NAME: usize = 249;

/// The map itself, shared by every connection ([`crate::shared::Shared::topics`]).
#[derive(Debug)]
pub struct TopicNames {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Inner {
    names: LruCache<[u8; 16], Arc<str>>,
    bytes: usize,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self::with_bounds(MAX_TOPIC_IDS, MAX_TOPIC_ID_BYTES)
    }
}

impl TopicNames {
    /// A map holding at most `max_entries` entries and `max_bytes` bytes (tests use small ones).
    pub fn with_bounds(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                names: LruCache::unbounded(),
                bytes: 0,
            }),
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// Remembers that `id` names the topic `name` (as a Metadata response said). A nil id, an
    /// empty name, one longer than Kafka allows, or one that is not UTF-8 is ignored.
    pub fn note(&self, id: [u8; 16], name: &[u8]) {
        if id == NIL_ID || name.is_empty() || name.len() > MAX_TOPIC_NAME {
            return;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            return;
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = inner.names.get(&id) {
            // Ids are never reused for another name; seen again, it is only fresher.
            if &**known == name {
                return;
            }
        }
        let cost = name.len() + ENTRY_OVERHEAD;
        if let Some(old) = inner.names.put(id, Arc::from(name)) {
            inner.bytes -= old.len() + ENTRY_OVERHEAD;
        }
        inner.bytes += cost;
        while inner.names.len() > self.max_entries || inner.bytes > self.max_bytes {
            match inner.names.pop_lru() {
                Some((_, old)) => inner.bytes -= old.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }

    /// The name of the topic `id` names, if a Metadata response told it.
    pub fn name(&self, id: &[u8; 16]) -> Option<Arc<str>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.names.get(id).cloned()
    }

    /// How a log line names a topic a request names by `name` and/or `id`: the name when the
    /// request gives one or the id is known, else `<uuid> (topic name unknown)`.
    pub fn text(&self, name: &str, id: &[u8; 16]) -> String {
        if !name.is_empty() || *id == NIL_ID {
            return clean_str(name);
        }
        match self.name(id) {
            Some(known) => clean_str(&known),
            None => format!("{} (topic name unknown)", uuid_text(id)),
        }
    }

    /// How a log line names partition `partition` of such a topic: `name-3`, or
    /// `<uuid>-3 (topic name unknown)`.
    pub fn partition_text(&self, name: &str, id: &[u8; 16], partition: i32) -> String {
        if !name.is_empty() || *id == NIL_ID {
            return format!("{}-{partition}", clean_str(name));
        }
        match self.name(id) {
            Some(known) => format!("{}-{partition}", clean_str(&known)),
            None => format!("{}-{partition} (topic name unknown)", uuid_text(id)),
        }
    }

    /// (entries, bytes) held now.
    pub fn len(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.names.len(), inner.bytes)
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    #[test]
    fn a_known_id_is_named_and_an_unknown_one_shown_as_such() {
        let t = TopicNames::default();
        t.note(id(1), b"orders");
        assert_eq!(t.text("", &id(1)), "orders");
        assert_eq!(t.partition_text("", &id(1), 3), "orders-3");
        assert_eq!(
            t.text("", &id(2)),
            "02020202-0202-0202-0202-020202020202 (topic name unknown)"
        );
        assert_eq!(
            t.partition_text("", &id(2), 0),
            "02020202-0202-0202-0202-020202020202-0 (topic name unknown)"
        );
        // A name the request gives wins; a nil id is a name-only request.
        assert_eq!(t.text("payments", &id(1)), "payments");
        assert_eq!(t.partition_text("payments", &NIL_ID, 1), "payments-1");
        // Control characters are escaped, as for every name a request gives.
        t.note(id(3), b"bad\nname");
        assert!(!t.text("", &id(3)).contains('\n'));
    }

    #[test]
    fn nonsense_is_not_remembered() {
        let t = TopicNames::default();
        t.note(NIL_ID, b"orders");
        t.note(id(1), b"");
        t.note(id(2), &[b'x'; MAX_TOPIC_NAME + 1]);
        t.note(id(3), &[0xff, 0xfe]);
        assert!(t.is_empty());
        t.note(id(4), &[b'x'; MAX_TOPIC_NAME]);
        assert_eq!(t.len(), (1, MAX_TOPIC_NAME + ENTRY_OVERHEAD));
    }

    #[test]
    fn entries_are_bounded_and_the_least_recently_used_goes_first() {
        let t = TopicNames::with_bounds(3, usize::MAX);
        t.note(id(1), b"a");
        t.note(id(2), b"b");
        t.note(id(3), b"c");
        // Seen again (a later Metadata) or looked up: fresher than 2.
        t.note(id(1), b"a");
        assert_eq!(t.name(&id(3)).as_deref(), Some("c"));
        t.note(id(4), b"d");
        assert_eq!(t.len(), (3, 3 + 3 * ENTRY_OVERHEAD));
        assert_eq!(t.name(&id(2)), None);
        for n in [1, 3, 4] {
            assert!(t.name(&id(n)).is_some(), "{n}");
        }
    }

    #[test]
    fn bytes_are_bounded() {
        let max = 3 * (10 + ENTRY_OVERHEAD);
        let t = TopicNames::with_bounds(usize::MAX, max);
        for n in 0..100u8 {
            t.note(id(n + 1), format!("topic-{n:04}").as_bytes());
            assert!(t.len().1 <= max);
        }
        assert_eq!(t.len(), (3, max));
        assert_eq!(t.name(&id(100)).as_deref(), Some("topic-0099"));
        assert_eq!(t.name(&id(97)), None);
        // One name larger than the whole bound is not kept at all, and takes nothing.
        let tiny = TopicNames::with_bounds(10, ENTRY_OVERHEAD);
        tiny.note(id(1), b"orders");
        assert_eq!(tiny.len(), (0, 0));
    }

    #[test]
    fn a_renamed_id_replaces_its_name_and_its_bytes() {
        let t = TopicNames::default();
        t.note(id(1), b"short");
        t.note(id(1), b"much-longer-name");
        assert_eq!(t.len(), (1, 16 + ENTRY_OVERHEAD));
        assert_eq!(t.name(&id(1)).as_deref(), Some("much-longer-name"));
    }
}
