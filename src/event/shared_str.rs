//! [`SharedStr`]: the text many events share (topic, symbol, `type`), and the process-wide set
//! of interned texts behind it.
//!
//! Every event carries its topic, symbol and `type`. Counting references to shared text costs
//! two atomic operations per text and event (the clone in enrich, the drop in the sink), six
//! per frame; an interned text is a plain `&'static str`, copied and dropped for free. Enrich
//! interns the texts of its per-topic entries once ([`SharedStr::interned`]); their number is
//! bounded by the topics Bybit sends us, and [`MAX_INTERNED`] caps it anyway (past it, texts
//! are reference counted again).

use std::{
    borrow::Borrow,
    cmp::Ordering,
    collections::HashSet,
    fmt,
    hash::{Hash, Hasher},
    ops::Deref,
    sync::{Arc, Mutex},
};

/// At most this many distinct texts are interned for the life of the process (some 100 bytes
/// each, with the set's slot): topics, symbols and `type` values of the subscriptions.
const MAX_INTERNED: usize = 16_384;

/// The interned texts (leaked on purpose: they live as long as the process).
static INTERNED: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// Text that many events share (topic, symbol, `type`): a clone is a copy of a pointer (an
/// interned text) or a reference count, so enrich hands out the same text for every event of a
/// topic without allocating.
#[derive(Clone)]
pub struct SharedStr(Repr);

#[derive(Clone)]
enum Repr {
    /// Interned: never freed, no count to keep.
    Static(&'static str),
    /// Reference counted (texts made outside enrich's entries, or past [`MAX_INTERNED`]).
    Counted(Arc<str>),
}

impl SharedStr {
    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Counted(s) => s,
        }
    }

    /// `s` as interned text (the same `&'static str` for equal texts), or reference counted once
    /// [`MAX_INTERNED`] texts are interned. For texts that many events will share; takes a lock,
    /// so not per event.
    pub fn interned(s: &str) -> Self {
        let mut set = INTERNED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let set = set.get_or_insert_with(HashSet::new);
        if let Some(&found) = set.get(s) {
            return Self(Repr::Static(found));
        }
        if set.len() >= MAX_INTERNED {
            return Self::from(s);
        }
        let leaked: &'static str = Box::leak(s.into());
        set.insert(leaked);
        Self(Repr::Static(leaked))
    }
}

impl Deref for SharedStr {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SharedStr {
    // As `str` hashes, so lookups by `&str` (through `Borrow`) find it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> Self {
        Self(Repr::Counted(s.into()))
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        Self(Repr::Counted(s.into()))
    }
}

impl From<SharedStr> for String {
    fn from(s: SharedStr) -> Self {
        s.as_str().to_owned()
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_texts_are_shared_and_equal_to_counted_ones() {
        let a = SharedStr::interned("publicTrade.SHAREDSTRTEST");
        let b = SharedStr::interned("publicTrade.SHAREDSTRTEST");
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        let counted = SharedStr::from("publicTrade.SHAREDSTRTEST");
        assert_eq!(a, counted);
        assert_eq!(a.cmp(&counted), Ordering::Equal);
        let hash = |s: &SharedStr| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            s.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&counted));
        assert_eq!(a, "publicTrade.SHAREDSTRTEST");
    }
}
