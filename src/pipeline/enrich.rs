//! Enrich: a classified frame → an [`Event`] with id, trace id, per-topic seq and the section 5
//! envelope serialised once.
//!
//! The envelope is written by hand in the spec's key order; string fields are escaped as
//! serde_json escapes them, and `data` is the raw slice of the frame, copied byte for byte (never
//! parsed and re-serialised). `Event.data` records where it sits in `Event.json`.
//!
//! The hot path allocates the envelope once, at its exact length: the part that depends only on
//! the topic (`"class"` … `"symbol"`) is built once per (category, topic) and kept with its seq
//! counter; ids and trace ids come from the enricher's own generator; `received_at` reuses the
//! formatted second.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, SecondsFormat, Timelike, Utc};
use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};
use uuid::Uuid;

use crate::{
    event::{Category, Endpoint, Event, EventClass, EventKey, SharedStr, TraceId},
    pipeline::{
        classify::Classified,
        key::{Key, KeyNumbers},
    },
};

/// FxHash (rustc's) over words: topics are short and come from Bybit and our own
/// subscriptions.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let word = |c: &[u8]| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(word(c));
        }
        let rest = chunks.remainder();
        if rest.is_empty() {
            return;
        }
        // The rest in one word: the last eight bytes (overlapping the chunks) when there are
        // that many, else the rest zero-padded.
        match bytes.len().checked_sub(8) {
            Some(at) => self.add(word(&bytes[at..])),
            None => {
                let mut padded = [0u8; 8];
                padded[..rest.len()].copy_from_slice(rest);
                self.add(u64::from_le_bytes(padded));
            }
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<V> = HashMap<Box<str>, V, BuildHasherDefault<FxHasher>>;

/// What enrich keeps per (category, topic).
#[derive(Debug)]
struct TopicEntry {
    /// Last seq handed out.
    seq: u64,
    /// The topic, shared by the events of this entry.
    topic: Option<SharedStr>,
    /// The symbol the envelope part was built for.
    symbol: Option<SharedStr>,
    /// `","class":"…","topic":…,"category":…,"symbol":…,"type":`.
    middle: Box<[u8]>,
    /// Per `type` value seen on this topic (at most [`MAX_TYPED`]): the shared value and
    /// `middle` followed by it and `,"exchange_ts":`, so an event copies one piece for them.
    typed: Vec<(Option<SharedStr>, Box<[u8]>)>,
}

/// At most this many `type` values are kept per topic (Bybit sends two: `snapshot`, `delta`).
const MAX_TYPED: usize = 4;

const EXCHANGE_TS: &[u8] = b",\"exchange_ts\":";

/// `middle` followed by the `type` value and `,"exchange_ts":`.
fn typed_part(middle: &[u8], kind: Option<&str>) -> Box<[u8]> {
    let mut buf = Vec::with_capacity(middle.len() + opt_str_len(kind) + EXCHANGE_TS.len());
    buf.extend_from_slice(middle);
    write_opt_str(&mut buf, kind);
    buf.extend_from_slice(EXCHANGE_TS);
    buf.into_boxed_slice()
}

/// Ids, trace ids and the formatted second: the enricher's generators.
#[derive(Debug)]
struct Generators {
    rng: SmallRng,
    /// Unix ms of the last uuid.
    last_ms: u64,
    /// uuid v7 `rand_a`: a counter within one ms, so ids of one enricher sort in order.
    counter: u16,
    /// The second `prefix` formats (`YYYY-MM-DDTHH:MM:SS`): its date and second of the day as
    /// chrono keeps them (compared without calendar arithmetic), and its Unix time.
    second: Option<(NaiveDate, u32, i64)>,
    prefix: [u8; 19],
}

impl Default for Generators {
    fn default() -> Self {
        Self {
            rng: SmallRng::from_rng(&mut rand::rng()),
            last_ms: 0,
            counter: 0,
            second: None,
            prefix: [0; 19],
        }
    }
}

impl Generators {
    /// A uuid v7 (RFC 9562): 48-bit Unix ms (`now`, the frame's receive time), a 12-bit
    /// counter seeded at random each ms (method 1, monotonic within this enricher), 62 random
    /// bits.
    fn uuid_v7(&mut self, now: u64) -> Uuid {
        if now > self.last_ms {
            self.last_ms = now;
            // Room for 2^11 ids in the ms before the counter spills into the next ms.
            self.counter = self.rng.random::<u16>() & 0x7ff;
        } else if self.counter >= 0xfff {
            self.last_ms += 1;
            self.counter = self.rng.random::<u16>() & 0x7ff;
        } else {
            self.counter += 1;
        }
        let rand_b = self.rng.next_u64() & ((1 << 62) - 1);
        Uuid::from_u128(
            (u128::from(self.last_ms & 0xffff_ffff_ffff) << 80)
                | (0x7 << 76)
                | (u128::from(self.counter) << 64)
                | (0b10 << 62)
                | u128::from(rand_b),
        )
    }

    /// 16 random bytes as 32 lowercase hex (never all zero, as W3C requires).
    fn trace_id(&mut self) -> [u8; 32] {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        if bytes == [0; 16] {
            bytes[15] = 1;
        }
        hex32(&bytes)
    }

    /// The Unix time (s) of `t` when it falls in the second `prefix` formats.
    #[inline]
    fn unix_second(&self, t: DateTime<Utc>) -> Option<i64> {
        let (date, of_day, unix) = self.second?;
        let naive = t.naive_utc();
        (naive.date() == date && naive.time().num_seconds_from_midnight() == of_day).then_some(unix)
    }

    /// `t` in Unix ms, as `timestamp_millis` gives it (from the formatted second when `t` falls
    /// in it).
    #[inline]
    fn unix_ms(&self, t: DateTime<Utc>) -> i64 {
        match self.unix_second(t) {
            Some(secs) => secs * 1000 + i64::from(t.timestamp_subsec_millis()),
            None => t.timestamp_millis(),
        }
    }

    /// `received_at` as RFC 3339 UTC with micros (`2025-09-26T00:00:00.123456Z`), exactly as
    /// `to_rfc3339_opts(SecondsFormat::Micros, true)` writes it.
    fn write_rfc3339(&mut self, buf: &mut Vec<u8>, t: DateTime<Utc>) {
        let nanos = t.timestamp_subsec_nanos();
        if self.unix_second(t).is_none() {
            let s = t.to_rfc3339_opts(SecondsFormat::Secs, true);
            match s.as_bytes().get(..19) {
                Some(prefix) if s.len() == 20 && nanos < 1_000_000_000 => {
                    self.prefix.copy_from_slice(prefix);
                    let naive = t.naive_utc();
                    let of_day = naive.time().num_seconds_from_midnight();
                    self.second = Some((naive.date(), of_day, t.timestamp()));
                }
                // Leap seconds, years past 9999: let chrono write it.
                _ => {
                    buf.extend_from_slice(
                        t.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes(),
                    );
                    return;
                }
            }
        }
        if nanos >= 1_000_000_000 {
            buf.extend_from_slice(t.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
            return;
        }
        buf.extend_from_slice(&self.prefix);
        let micros = nanos / 1000;
        let mut frac = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
        let mut m = micros;
        for d in frac[1..7].iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        buf.extend_from_slice(&frac);
    }
}

/// Lowercase hex of 16 bytes.
fn hex32(bytes: &[u8; 16]) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

/// The enrich stage's state: per (category, topic) its seq counter and envelope part, and the
/// id generators.
#[derive(Debug, Default)]
pub struct Enricher {
    /// Index 0..4 by category, 4 for no category; keyed by topic so lookups need no allocation.
    topics: [FxMap<TopicEntry>; 5],
    ids: Generators,
    /// The `type` values seen (`snapshot`, `delta`), shared by every event.
    kinds: Vec<SharedStr>,
}

/// At most this many distinct `type` values are kept shared; others are allocated per event.
const MAX_KINDS: usize = 8;

/// 32 lowercase hex characters from 16 random bytes (never all zero, as W3C requires).
pub fn trace_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    if bytes == [0; 16] {
        bytes[15] = 1;
    }
    hex::encode(bytes)
}

/// The shared text of a `type` value: one of `kinds` (at most [`MAX_KINDS`] are kept).
fn shared_kind(kinds: &mut Vec<SharedStr>, k: &str) -> SharedStr {
    match kinds.iter().find(|s| s.as_str() == k) {
        Some(s) => s.clone(),
        None if kinds.len() < MAX_KINDS => {
            let s = SharedStr::interned(k);
            kinds.push(s.clone());
            s
        }
        None => SharedStr::from(k),
    }
}

/// Whether serde_json would write `s` as `"s"` (nothing to escape).
fn plain(s: &str) -> bool {
    !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// `s` as a JSON string, escaped like serde_json.
fn write_str(buf: &mut Vec<u8>, s: &str) {
    if plain(s) {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

fn write_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

/// Length of `s` as [`write_opt_str`] writes it.
fn opt_str_len(s: Option<&str>) -> usize {
    match s {
        Some(s) if plain(s) => s.len() + 2,
        Some(s) => serde_json::to_string(s).map_or(0, |j| j.len()),
        None => 4,
    }
}

/// `","class":"…","topic":…,"category":…,"symbol":…,"type":`.
fn middle(
    class: EventClass,
    topic: &str,
    category: Option<Category>,
    symbol: Option<&str>,
) -> Box<[u8]> {
    let mut buf = Vec::with_capacity(topic.len() * 2 + 80);
    buf.extend_from_slice(b"\",\"class\":\"");
    buf.extend_from_slice(class.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"topic\":");
    write_str(&mut buf, topic);
    buf.extend_from_slice(b",\"category\":");
    match category {
        Some(c) => {
            buf.push(b'"');
            buf.extend_from_slice(c.as_str().as_bytes());
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"symbol\":");
    write_opt_str(&mut buf, symbol);
    buf.extend_from_slice(b",\"type\":");
    buf.into_boxed_slice()
}

impl Enricher {
    fn entry(&mut self, category: Option<Category>, topic: &str) -> &mut TopicEntry {
        let map = &mut self.topics[category.map_or(4, |c| c as usize)];
        if !map.contains_key(topic) {
            map.insert(
                topic.into(),
                TopicEntry {
                    seq: 0,
                    topic: None,
                    symbol: None,
                    middle: Box::default(),
                    typed: Vec::new(),
                },
            );
        }
        map.get_mut(topic).expect("inserted above")
    }

    /// The next seq of (category, topic), from 1.
    pub fn next_seq(&mut self, category: Option<Category>, topic: &str) -> u64 {
        let entry = self.entry(category, topic);
        entry.seq += 1;
        entry.seq
    }

    /// Builds the event of one classified frame.
    // Inlined into the stage's loop so the classified frame is read in place, not copied into
    // the argument first.
    #[inline]
    pub fn enrich(&mut self, c: Classified) -> Event {
        let class = c.class;
        let category = c.category;
        let symbol = c.symbol();
        let frame = &c.decoded.frame;
        let topic = frame.topic();
        let kind = frame.kind();
        let head = frame.head();
        let exchange_ts = if frame.endpoint == Endpoint::Private {
            head.creation_time.or(head.ts)
        } else {
            head.ts.or(head.creation_time)
        };
        let received_at = frame.received_at;
        let raw = frame.data();

        let map = &mut self.topics[category.map_or(4, |c| c as usize)];
        let entry = match map.get_mut(topic) {
            Some(e) => e,
            None => {
                map.insert(
                    topic.into(),
                    TopicEntry {
                        seq: 0,
                        topic: Some(SharedStr::interned(topic)),
                        symbol: symbol.map(SharedStr::interned),
                        middle: middle(class, topic, category, symbol),
                        typed: Vec::new(),
                    },
                );
                map.get_mut(topic).expect("inserted above")
            }
        };
        entry.seq += 1;
        let seq = entry.seq;
        if entry.middle.is_empty() {
            entry.symbol = symbol.map(SharedStr::interned);
            entry.middle = middle(class, topic, category, symbol);
        }
        let shared_topic = entry
            .topic
            .get_or_insert_with(|| SharedStr::interned(topic))
            .clone();
        // An entry is built for the symbol of its first frame; (category, topic) fixes it for
        // every real topic, but a different one must not reuse it.
        let kinds = &mut self.kinds;
        let rebuilt;
        let (typed, shared_symbol, shared_kind): (&[u8], _, _) =
            if entry.symbol.as_ref().map(SharedStr::as_str) != symbol {
                rebuilt = typed_part(&middle(class, topic, category, symbol), kind);
                let shared_kind = kind.map(|k| shared_kind(kinds, k));
                (&rebuilt, symbol.map(SharedStr::from), shared_kind)
            } else {
                let found = entry.typed.iter().position(|(k, _)| k.as_deref() == kind);
                let at = match found {
                    Some(at) => at,
                    None => {
                        let part = typed_part(&entry.middle, kind);
                        let shared_kind = kind.map(|k| shared_kind(kinds, k));
                        if entry.typed.len() == MAX_TYPED {
                            // More `type` values than Bybit sends: the oldest goes.
                            entry.typed.remove(0);
                        }
                        entry.typed.push((shared_kind, part));
                        entry.typed.len() - 1
                    }
                };
                let (shared_kind, part) = &entry.typed[at];
                (part, entry.symbol.clone(), shared_kind.clone())
            };

        let now_ms = u64::try_from(self.ids.unix_ms(received_at)).unwrap_or(0);
        let id = self.ids.uuid_v7(now_ms);
        let trace = self.ids.trace_id();
        let mut ts_buf = itoa::Buffer::new();
        let ts_text: &[u8] = match exchange_ts {
            Some(ts) => ts_buf.format(ts).as_bytes(),
            None => b"null",
        };
        let mut seq_buf = itoa::Buffer::new();
        let seq_text = seq_buf.format(seq).as_bytes();
        let mut key_numbers = KeyNumbers::default();
        let recovered = frame.is_recovered();
        let key = match frame.recovered_key() {
            Some(given) => Key::given(given),
            None => Key::live(
                &mut key_numbers,
                frame.endpoint,
                class,
                frame.text(),
                head,
                topic,
                kind,
                exchange_ts,
            ),
        };
        // The rare key JSON must escape: its text, escaped once.
        let escaped_key = (!key.is_plain()).then(|| {
            let text = key.to_text();
            let json = serde_json::to_string(&text).unwrap_or_default();
            (text, json)
        });
        let key_json_len = match &escaped_key {
            Some((_, json)) => json.len(),
            None => key.len() + 2,
        };
        let recovered_text: &[u8] = if recovered { b"true" } else { b"false" };

        const ID: &[u8] = b"{\"id\":\"";
        const TRACE: &[u8] = b"\",\"trace_id\":\"";
        const RECEIVED_AT: &[u8] = b",\"received_at\":\"";
        const SEQ: &[u8] = b"\",\"seq\":";
        const KEY: &[u8] = b",\"key\":";
        const RECOVERED: &[u8] = b",\"recovered\":";
        const DATA: &[u8] = b",\"data\":";
        // `2025-09-26T00:00:00.123456Z`.
        const RFC3339_MICROS: usize = 27;
        let len = ID.len()
            + 36
            + TRACE.len()
            + 32
            + typed.len()
            + ts_text.len()
            + RECEIVED_AT.len()
            + RFC3339_MICROS
            + SEQ.len()
            + seq_text.len()
            + KEY.len()
            + key_json_len
            + RECOVERED.len()
            + recovered_text.len()
            + DATA.len()
            + raw.len()
            + 1;
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(ID);
        buf.extend_from_slice(
            id.hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        buf.extend_from_slice(TRACE);
        buf.extend_from_slice(&trace);
        buf.extend_from_slice(typed);
        buf.extend_from_slice(ts_text);
        buf.extend_from_slice(RECEIVED_AT);
        self.ids.write_rfc3339(&mut buf, received_at);
        buf.extend_from_slice(SEQ);
        buf.extend_from_slice(seq_text);
        buf.extend_from_slice(KEY);
        let event_key = match escaped_key {
            Some((text, json)) => {
                buf.extend_from_slice(json.as_bytes());
                EventKey::Text(text.into())
            }
            None => {
                buf.push(b'"');
                let key_start = buf.len();
                key.write(&mut buf);
                let key_end = buf.len();
                buf.push(b'"');
                EventKey::InJson(key_start..key_end)
            }
        };
        buf.extend_from_slice(RECOVERED);
        buf.extend_from_slice(recovered_text);
        buf.extend_from_slice(DATA);
        let start = buf.len();
        buf.extend_from_slice(raw.as_bytes());
        let end = buf.len();
        buf.push(b'}');
        debug_assert_eq!(buf.len(), len);

        Event {
            id,
            trace_id: TraceId::from_ascii(trace).expect("lowercase hex is ASCII"),
            class,
            topic: shared_topic,
            endpoint: frame.endpoint,
            category,
            symbol: shared_symbol,
            kind: shared_kind,
            exchange_ts,
            received_at,
            received_mono: frame.received_mono,
            seq,
            key: event_key,
            recovered,
            json: Bytes::from(buf),
            data: start..end,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod envelope_golden;
