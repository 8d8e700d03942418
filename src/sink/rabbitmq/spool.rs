//! The on-disk spool of private events the broker has not taken yet.
//!
//! One append-only file, `<spool_dir>/<prefix>.spool`, of length-prefixed records:
//! `[u32 little-endian length][u8 endpoint][envelope JSON]`. Records are read back in order;
//! once every record has been read the file is truncated to zero. A spool left by an earlier
//! run is replayed first (its records are older). A torn last record (crash mid-write) is cut
//! off. Appends go to the OS at once (a process crash loses nothing) and are made durable in
//! groups: [`Spool::sync_handle`] hands out a clone of the file (and, the first time, the
//! directory) to `fsync` outside the outbox lock, which the sink does every
//! [`SYNC_INTERVAL`] while records are being written, so a machine crash loses at most that
//! much. Stopping with the broker unreachable calls [`Spool::sync`].

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Read, Seek, SeekFrom, Write},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::event::{Category, Endpoint, Event, EventClass};

/// How often written records are made durable (group commit).
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The spool file and the read position in it.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    writer: Option<File>,
    reader: Option<BufReader<File>>,
    /// Records written and not yet read back.
    pending: u64,
    /// Bytes written since the last `fsync`.
    unsynced: bool,
    /// The directory entry of the file has been synced.
    dir_synced: bool,
}

/// What to `fsync` for the records written so far; done without holding the spool.
#[derive(Debug)]
pub struct SyncHandle {
    file: File,
    dir: Option<PathBuf>,
}

impl SyncHandle {
    /// `fsync`s the file's data (and the directory, for a file this run created).
    pub fn sync(self) -> io::Result<()> {
        self.file.sync_data()?;
        if let Some(dir) = self.dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    id: Uuid,
    trace_id: String,
    class: EventClass,
    topic: String,
    category: Option<Category>,
    symbol: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    exchange_ts: Option<i64>,
    received_at: DateTime<Utc>,
    seq: u64,
    #[serde(borrow)]
    data: &'a RawValue,
}

fn endpoint_code(e: Endpoint) -> u8 {
    match e {
        Endpoint::Private => 0,
        Endpoint::Public(c) => 1 + c as u8,
    }
}

fn endpoint_of(code: u8) -> Endpoint {
    match code {
        1..=4 => Endpoint::Public(Category::ALL[usize::from(code - 1)]),
        _ => Endpoint::Private,
    }
}

/// Rebuilds an event from its spooled envelope; `None` for a record that does not parse.
fn event_of(code: u8, json: Vec<u8>) -> Option<Event> {
    let env: Envelope<'_> = serde_json::from_slice(&json).ok()?;
    let raw = env.data.get();
    let start = (raw.as_ptr() as usize).wrapping_sub(json.as_ptr() as usize);
    let data = start..start + raw.len();
    let event = Event {
        id: env.id,
        trace_id: env.trace_id,
        class: env.class,
        topic: env.topic,
        endpoint: endpoint_of(code),
        category: env.category,
        symbol: env.symbol,
        kind: env.kind,
        exchange_ts: env.exchange_ts,
        received_at: env.received_at,
        received_mono: Instant::now(),
        seq: env.seq,
        json: Bytes::new(),
        data,
    };
    Some(Event {
        json: Bytes::from(json),
        ..event
    })
}

impl Spool {
    /// Opens (or creates) the spool of `prefix` under `dir`, counting records left by an
    /// earlier run.
    pub fn open(dir: &std::path::Path, prefix: &str) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{prefix}.spool"));
        let mut spool = Self {
            path,
            writer: None,
            reader: None,
            pending: 0,
            unsynced: false,
            dir_synced: false,
        };
        spool.recover()?;
        Ok(spool)
    }

    fn recover(&mut self) -> io::Result<()> {
        let Ok(file) = File::open(&self.path) else {
            return Ok(());
        };
        let mut reader = BufReader::new(file);
        let mut good = 0u64;
        while let Some(len) = read_record(&mut reader)? {
            good += 4 + len as u64;
            self.pending += 1;
        }
        OpenOptions::new()
            .write(true)
            .open(&self.path)?
            .set_len(good)?;
        Ok(())
    }

    /// Records not yet read back.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends one event.
    pub fn append(&mut self, event: &Event) -> io::Result<()> {
        if self.writer.is_none() {
            self.writer = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let len = u32::try_from(event.json.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "event too large"))?;
        let mut rec = Vec::with_capacity(event.json.len() + 5);
        rec.extend_from_slice(&len.to_le_bytes());
        rec.push(endpoint_code(event.endpoint));
        rec.extend_from_slice(&event.json);
        if let Some(w) = self.writer.as_mut() {
            w.write_all(&rec)?;
        }
        self.pending += 1;
        self.unsynced = true;
        Ok(())
    }

    /// What to `fsync` for the records written since the last call, or `None` when there are
    /// none. The caller syncs it outside any lock ([`SyncHandle::sync`]).
    pub fn sync_handle(&mut self) -> io::Result<Option<SyncHandle>> {
        let Some(w) = self.writer.as_ref().filter(|_| self.unsynced) else {
            return Ok(None);
        };
        let file = w.try_clone()?;
        self.unsynced = false;
        let dir = if self.dir_synced {
            None
        } else {
            self.dir_synced = true;
            self.path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(PathBuf::from)
        };
        Ok(Some(SyncHandle { file, dir }))
    }

    /// Reads the oldest unread event; truncates the file once all are read.
    pub fn read_next(&mut self) -> io::Result<Option<Arc<Event>>> {
        while self.pending > 0 {
            if self.reader.is_none() {
                self.reader = Some(BufReader::new(File::open(&self.path)?));
            }
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            let mut len = [0u8; 4];
            reader.read_exact(&mut len)?;
            let mut rec = vec![0u8; u32::from_le_bytes(len) as usize];
            reader.read_exact(&mut rec)?;
            self.pending -= 1;
            if self.pending == 0 {
                self.reset()?;
            }
            let code = rec.first().copied().unwrap_or(0);
            rec.remove(0);
            match event_of(code, rec) {
                Some(ev) => return Ok(Some(Arc::new(ev))),
                None => {
                    tracing::error!(path = %self.path.display(), "Skipped an unreadable spool record.")
                }
            }
        }
        Ok(None)
    }

    /// Puts `older` events before every unread record (used when stopping with the broker
    /// away: the in-memory private events go to disk ahead of the newer spooled ones).
    pub fn prepend(&mut self, older: Vec<Arc<Event>>) -> io::Result<()> {
        if older.is_empty() {
            return Ok(());
        }
        let mut rest = vec![];
        while let Some(ev) = self.read_next()? {
            rest.push(ev);
        }
        self.reset()?;
        for ev in older.iter().chain(rest.iter()) {
            self.append(ev)?;
        }
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// Flushes written records to the disk (`fsync`), e.g. when stopping.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
            w.sync_all()?;
        }
        self.unsynced = false;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The directory entry too, for a spool file created by this run.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.reader = None;
        self.writer = None;
        self.pending = 0;
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&self.path)?
            .seek(SeekFrom::Start(0))?;
        Ok(())
    }
}

/// Length of the next complete record (and skips it), `None` at the end or at a torn record.
fn read_record(r: &mut impl Read) -> io::Result<Option<u32>> {
    let mut len = [0u8; 4];
    if r.read_exact(&mut len).is_err() {
        return Ok(None);
    }
    let len = u32::from_le_bytes(len);
    let copied = io::copy(&mut r.take(u64::from(len)), &mut io::sink())?;
    Ok((copied == u64::from(len) && len > 0).then_some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{
        classify::classify, decode::decode, decode::tests::frame, enrich::Enricher,
    };

    fn wallet(e: &mut Enricher) -> Arc<Event> {
        let text = include_str!("../../../tests/fixtures/bybit/wallet.json").trim_end();
        Arc::new(e.enrich(classify(decode(frame(Endpoint::Private, text)))))
    }

    #[test]
    fn spooled_events_come_back_in_order_byte_for_byte_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = Enricher::default();
        let events: Vec<_> = (0..5).map(|_| wallet(&mut e)).collect();
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        for ev in &events[..3] {
            spool.append(ev).unwrap();
        }
        let first = spool.read_next().unwrap().unwrap();
        assert_eq!(first.json, events[0].json);
        assert_eq!(first.data(), events[0].data());
        assert_eq!(first.routing_key(), "balances.private");
        drop(spool);
        // Reopen: records 0..3 are all pending again (at-least-once), then more are added.
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        assert_eq!(spool.pending(), 3);
        spool.prepend(vec![events[4].clone()]).unwrap();
        let seqs: Vec<_> = std::iter::from_fn(|| spool.read_next().unwrap())
            .map(|ev| ev.seq)
            .collect();
        assert_eq!(seqs, [5, 1, 2, 3]);
        assert_eq!(
            std::fs::metadata(dir.path().join("t.spool")).unwrap().len(),
            0
        );
    }

    #[test]
    fn sync_handles_cover_new_records_once_and_the_directory_the_first_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = Enricher::default();
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        assert!(
            spool.sync_handle().unwrap().is_none(),
            "nothing written yet"
        );
        spool.append(&wallet(&mut e)).unwrap();
        let first = spool.sync_handle().unwrap().expect("a record to sync");
        assert_eq!(first.dir.as_deref(), Some(dir.path()));
        first.sync().unwrap();
        assert!(spool.sync_handle().unwrap().is_none(), "already synced");
        spool.append(&wallet(&mut e)).unwrap();
        let second = spool.sync_handle().unwrap().expect("the new record");
        assert!(second.dir.is_none(), "the directory entry is synced once");
        second.sync().unwrap();
        assert_eq!(Spool::open(dir.path(), "t").unwrap().pending(), 2);
    }
}
