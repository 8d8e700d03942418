//! The on-disk spool of private events the broker has not confirmed yet.
//!
//! One append-only log, `<spool_dir>/<prefix>.spool`:
//!
//! - a 64-byte header: the magic `WSGSPOL2` and two slots `[u64 head][u64 generation][u32
//!   crc]`, written alternately, so a torn header write leaves the other slot valid. `head` is
//!   the persisted read offset: every record before it was confirmed by the broker. It moves
//!   on confirm, never on read, and is written with the group commit.
//! - records `[u32 magic][u32 length][u32 crc32c(length ‖ payload)][payload]`, the payload
//!   being `[u8 endpoint][envelope JSON]`.
//!
//! Appends are written at the last good length (`pwrite`), and a failed write (disk full) is
//! cut back to it, so it never misaligns later records. Opening scans from `head`: a torn tail
//! (a crash mid-write) is cut off, and a damaged record in the middle is skipped up to the next
//! record magic whose checksum holds; each damaged stretch is counted
//! (`ws_gateway_spool_unreadable_records_total`) and logged at ERROR, and so is a record whose
//! envelope no longer parses. Records are streamed one at a time; the file is never loaded.
//!
//! Once every record is confirmed the log is cut back to its header. The log is bounded
//! (`publish.spool_max_bytes`): a full log first compacts (the unconfirmed tail is written to
//! a new file, fsynced and renamed over the log); if still full, [`Spool::append`] answers
//! [`AppendError::Full`] and the caller waits (private events block the source, never drop).
//! [`Spool::spill`] puts older in-memory events ahead of the unconfirmed records the same way
//! (new file + fsync + rename). Appends reach the OS at once (a process crash loses nothing)
//! and are made durable in groups: [`Spool::sync_handle`] hands out a clone of the file to
//! `fsync` outside the outbox lock every [`SYNC_INTERVAL`], so a machine crash loses at most
//! that much. A spool in the format of earlier versions (`[u32 length][payload]`, no header)
//! is converted when opened.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, BufReader, BufWriter, Read, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{
    event::{Category, Endpoint, Event, EventClass},
    telemetry::SPOOL_UNREADABLE,
};

/// How often written records are made durable (group commit).
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Default bound of the spool file (`publish.spool_max_bytes`).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

const FILE_MAGIC: &[u8; 8] = b"WSGSPOL2";
const HDR: u64 = 64;
const SLOT: u64 = 24;
const REC_MAGIC: u32 = 0x5753_5052;
const REC_HDR: u64 = 12;
/// Larger records are refused when written and taken for damage when read.
const MAX_RECORD: u64 = 64 << 20;

static CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The spool holds `publish.spool_max_bytes` already; wait for confirms.
    #[error("the spool is full")]
    Full,
    /// The write failed (nothing of it is left in the file).
    #[error("cannot write the spool")]
    Io(#[from] io::Error),
}

/// One record read and not yet confirmed (or a damaged stretch, settled at once).
#[derive(Debug)]
struct Outstanding {
    id: Option<Uuid>,
    end: u64,
    done: bool,
}

/// The spool file and the positions in it.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    /// End of the last good record: appends go here.
    end: u64,
    /// Everything before it is confirmed.
    head: u64,
    /// `head` as the header on disk says (after the next fsync).
    written_head: u64,
    generation: u64,
    /// Next record to read.
    read_pos: u64,
    /// Good records in `read_pos..end`.
    pending: u64,
    /// Records read and not yet confirmed, in file order.
    outstanding: VecDeque<Outstanding>,
    max_bytes: u64,
    unsynced: bool,
    dir_synced: bool,
    unreadable: u64,
    /// Test hook: the next append writes this many bytes, then fails (a disk filling up).
    #[cfg(test)]
    fail_after: Option<usize>,
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
        trace_id: env.trace_id.as_str().try_into().ok()?,
        class: env.class,
        topic: env.topic.into(),
        endpoint: endpoint_of(code),
        category: env.category,
        symbol: env.symbol.map(Into::into),
        kind: env.kind.map(Into::into),
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

fn slot_bytes(head: u64, generation: u64) -> [u8; SLOT as usize] {
    let mut b = [0u8; SLOT as usize];
    b[..8].copy_from_slice(&head.to_le_bytes());
    b[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = CRC.checksum(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

fn parse_slot(b: &[u8]) -> Option<(u64, u64)> {
    let crc = u32::from_le_bytes(b[16..20].try_into().ok()?);
    (CRC.checksum(&b[..16]) == crc).then(|| {
        (
            u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(b[8..16].try_into().unwrap_or_default()),
        )
    })
}

fn header_bytes(head: u64, generation: u64) -> [u8; HDR as usize] {
    let mut b = [0u8; HDR as usize];
    b[..8].copy_from_slice(FILE_MAGIC);
    b[8..8 + SLOT as usize].copy_from_slice(&slot_bytes(head, generation));
    b
}

/// One encoded record.
fn record(event: &Event) -> Result<Vec<u8>, AppendError> {
    let len = event.json.len() as u64 + 1;
    if len > MAX_RECORD {
        return Err(
            io::Error::new(io::ErrorKind::InvalidInput, "event too large for the spool").into(),
        );
    }
    let mut rec = Vec::with_capacity(REC_HDR as usize + len as usize);
    rec.extend_from_slice(&REC_MAGIC.to_le_bytes());
    rec.extend_from_slice(&(len as u32).to_le_bytes());
    rec.extend_from_slice(&[0u8; 4]);
    rec.push(endpoint_code(event.endpoint));
    rec.extend_from_slice(&event.json);
    let mut digest = CRC.digest();
    digest.update(&rec[4..8]);
    digest.update(&rec[REC_HDR as usize..]);
    let crc = digest.finalize();
    rec[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(rec)
}

/// The payload of the good record at `pos` (ending at or before `limit`) and its end, or
/// `None` when the bytes there are not a whole, intact record.
fn record_at(file: &File, pos: u64, limit: u64) -> io::Result<Option<(Vec<u8>, u64)>> {
    if pos + REC_HDR > limit {
        return Ok(None);
    }
    let mut h = [0u8; REC_HDR as usize];
    file.read_exact_at(&mut h, pos)?;
    let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let len = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
    let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let end = pos + REC_HDR + len;
    if magic != REC_MAGIC || len == 0 || len > MAX_RECORD || end > limit {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, pos + REC_HDR)?;
    let mut digest = CRC.digest();
    digest.update(&h[4..8]);
    digest.update(&payload);
    Ok((digest.finalize() == crc).then_some((payload, end)))
}

/// The offset of the next good record after `from` (a record magic whose record checks out),
/// or `limit` when there is none. Reads in chunks; never loads the file.
fn next_good(file: &File, from: u64, limit: u64) -> io::Result<u64> {
    let magic = REC_MAGIC.to_le_bytes();
    let mut pos = from;
    let mut buf = vec![0u8; 64 * 1024];
    while pos + REC_HDR <= limit {
        let n = usize::try_from((limit - pos).min(buf.len() as u64)).unwrap_or(buf.len());
        file.read_exact_at(&mut buf[..n], pos)?;
        for i in 0..n.saturating_sub(3) {
            if buf[i..i + 4] == magic && record_at(file, pos + i as u64, limit)?.is_some() {
                return Ok(pos + i as u64);
            }
        }
        pos += n.saturating_sub(3).max(1) as u64;
    }
    Ok(limit)
}

fn count_unreadable(path: &Path, from: u64, to: u64, what: &str) {
    metrics::counter!(SPOOL_UNREADABLE).increment(1);
    tracing::error!(
        path = %path.display(),
        from,
        to,
        what,
        "Skipped an unreadable spool record; the private events in it are lost."
    );
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

impl Spool {
    /// Opens (or creates) the spool of `prefix` under `dir` with the default bound, finding
    /// the records an earlier run left unconfirmed.
    pub fn open(dir: &Path, prefix: &str) -> io::Result<Self> {
        Self::open_bounded(dir, prefix, DEFAULT_MAX_BYTES)
    }

    /// [`Spool::open`] with a bound of `max_bytes` for the file.
    pub fn open_bounded(dir: &Path, prefix: &str, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{prefix}.spool"));
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            write_fresh(&path, std::iter::empty(), None)?;
        } else {
            let mut magic = [0u8; 8];
            let legacy = File::open(&path)?.read_exact(&mut magic).is_err() || &magic != FILE_MAGIC;
            if legacy {
                convert_legacy(&path)?;
            }
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let len = file.metadata()?.len();
        let mut h = [0u8; HDR as usize];
        let (head, generation) = if len >= HDR && file.read_exact_at(&mut h, 0).is_ok() {
            let slots = [8usize, 8 + SLOT as usize].map(|o| parse_slot(&h[o..o + SLOT as usize]));
            slots
                .into_iter()
                .flatten()
                .max_by_key(|(_, g)| *g)
                .unwrap_or((HDR, 0))
        } else {
            (HDR, 0)
        };
        let head = head.clamp(HDR, len.max(HDR));
        let mut spool = Self {
            path,
            file,
            end: len.max(HDR),
            head,
            written_head: head,
            generation,
            read_pos: head,
            pending: 0,
            outstanding: VecDeque::new(),
            max_bytes: max_bytes.max(HDR + REC_HDR + 1),
            unsynced: false,
            dir_synced: true,
            unreadable: 0,
            #[cfg(test)]
            fail_after: None,
        };
        spool.recover(len)?;
        Ok(spool)
    }

    /// Counts the good records after `head` and cuts a torn tail off.
    fn recover(&mut self, len: u64) -> io::Result<()> {
        let mut pos = self.head;
        let mut good_end = self.head;
        while pos < len {
            if let Some((_, end)) = record_at(&self.file, pos, len)? {
                self.pending += 1;
                pos = end;
                good_end = end;
            } else {
                let next = next_good(&self.file, pos + 1, len)?;
                if next >= len {
                    break;
                }
                // Damage in the middle: counted and logged when the reader reaches it.
                pos = next;
            }
        }
        if good_end < len {
            self.unreadable += 1;
            metrics::counter!(SPOOL_UNREADABLE).increment(1);
            tracing::warn!(path = %self.path.display(), at = good_end, bytes = len - good_end, "Cut a torn record off the end of the spool (a crash mid-write).");
            self.file.set_len(good_end)?;
            self.file.sync_all()?;
        }
        self.end = good_end.max(HDR);
        Ok(())
    }

    /// Good records not yet read.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// True when every record is confirmed (nothing to read, nothing in flight).
    pub fn is_empty(&self) -> bool {
        self.head >= self.end
    }

    /// True when the event `id` was read from the spool and is not confirmed yet.
    pub fn holds(&self, id: Uuid) -> bool {
        self.outstanding.iter().any(|o| o.id == Some(id))
    }

    /// Damaged stretches and unparsable records met so far by this handle.
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }

    /// Bytes the file takes.
    pub fn len_bytes(&self) -> u64 {
        self.end
    }

    /// Appends one event at the end of the last good record. A failed write is cut back, so
    /// later records stay aligned; a full spool first compacts, then answers `Full`.
    pub fn append(&mut self, event: &Event) -> Result<(), AppendError> {
        self.append_inner(event, true)
    }

    /// [`Spool::append`] past the bound (stopping: what the pipeline still holds goes to disk).
    pub fn append_past_bound(&mut self, event: &Event) -> Result<(), AppendError> {
        self.append_inner(event, false)
    }

    fn append_inner(&mut self, event: &Event, bounded: bool) -> Result<(), AppendError> {
        let rec = record(event)?;
        let len = rec.len() as u64;
        if bounded && self.end + len > self.max_bytes && self.end > HDR {
            if self.head > HDR {
                self.compact()?;
            }
            if self.end + len > self.max_bytes && self.end > HDR {
                return Err(AppendError::Full);
            }
        }
        if let Err(error) = self.write_at_end(&rec) {
            // Nothing of a failed write may stay: the next record goes at the same place.
            let _ = self.file.set_len(self.end);
            return Err(error.into());
        }
        self.end += len;
        self.pending += 1;
        self.unsynced = true;
        Ok(())
    }

    fn write_at_end(&mut self, rec: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_after.take() {
            self.file.write_all_at(&rec[..n.min(rec.len())], self.end)?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "disk full (test)",
            ));
        }
        self.file.write_all_at(rec, self.end)
    }

    /// Reads the oldest unread event; it stays in the spool until [`Spool::confirm`]ed.
    pub fn read_next(&mut self) -> io::Result<Option<Arc<Event>>> {
        while self.read_pos < self.end {
            let pos = self.read_pos;
            match record_at(&self.file, pos, self.end)? {
                Some((mut payload, end)) => {
                    self.read_pos = end;
                    self.pending = self.pending.saturating_sub(1);
                    let code = payload.first().copied().unwrap_or(0);
                    payload.remove(0);
                    if let Some(ev) = event_of(code, payload) {
                        self.outstanding.push_back(Outstanding {
                            id: Some(ev.id),
                            end,
                            done: false,
                        });
                        return Ok(Some(Arc::new(ev)));
                    }
                    self.unreadable += 1;
                    count_unreadable(&self.path, pos, end, "envelope does not parse");
                    self.settle_damage(end);
                }
                None => {
                    let next = next_good(&self.file, pos + 1, self.end)?;
                    self.read_pos = next;
                    self.unreadable += 1;
                    count_unreadable(&self.path, pos, next, "checksum or framing");
                    self.settle_damage(next);
                }
            }
        }
        Ok(None)
    }

    fn settle_damage(&mut self, end: u64) {
        self.outstanding.push_back(Outstanding {
            id: None,
            end,
            done: true,
        });
        self.advance();
    }

    /// Marks the events of `ids` confirmed by the broker; moves the read offset over every
    /// leading confirmed record. True when space was freed.
    pub fn confirm(&mut self, ids: impl IntoIterator<Item = Uuid>) -> bool {
        if self.outstanding.is_empty() {
            return false;
        }
        for id in ids {
            if let Some(o) = self
                .outstanding
                .iter_mut()
                .find(|o| !o.done && o.id == Some(id))
            {
                o.done = true;
            }
        }
        self.advance()
    }

    fn advance(&mut self) -> bool {
        let before = self.head;
        while self.outstanding.front().is_some_and(|o| o.done) {
            if let Some(o) = self.outstanding.pop_front() {
                self.head = o.end;
            }
        }
        if self.head >= self.end
            && self.read_pos >= self.end
            && self.outstanding.is_empty()
            && let Err(error) = self.reset()
        {
            tracing::error!(%error, path = %self.path.display(), "Cannot cut the drained spool back; it is replayed from its persisted offset.");
        }
        self.head != before
    }

    /// Every record is confirmed: cut the log back to its header (header first, then the
    /// length, then `fsync`, so a crash replays at worst, never skips).
    fn reset(&mut self) -> io::Result<()> {
        self.generation += 1;
        let slot = 8 + (self.generation % 2) * SLOT;
        self.file
            .write_all_at(&slot_bytes(HDR, self.generation), slot)?;
        self.file.set_len(HDR)?;
        self.file.sync_data()?;
        self.end = HDR;
        self.head = HDR;
        self.written_head = HDR;
        self.read_pos = HDR;
        self.pending = 0;
        self.unsynced = false;
        Ok(())
    }

    /// Writes the header slot when the read offset moved (made durable by the next sync).
    fn write_head(&mut self) -> io::Result<()> {
        if self.head == self.written_head {
            return Ok(());
        }
        self.generation += 1;
        let slot = 8 + (self.generation % 2) * SLOT;
        self.file
            .write_all_at(&slot_bytes(self.head, self.generation), slot)?;
        self.written_head = self.head;
        self.unsynced = true;
        Ok(())
    }

    /// What to `fsync` for the records written (and the read offset moved) since the last
    /// call, or `None` when nothing changed. The caller syncs it outside any lock.
    pub fn sync_handle(&mut self) -> io::Result<Option<SyncHandle>> {
        self.write_head()?;
        if !self.unsynced {
            return Ok(None);
        }
        let file = self.file.try_clone()?;
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

    /// Makes everything written durable now (`fsync`), e.g. when stopping.
    pub fn sync(&mut self) -> io::Result<()> {
        self.write_head()?;
        self.file.sync_data()?;
        self.unsynced = false;
        if !self.dir_synced {
            sync_dir(&self.path)?;
            self.dir_synced = true;
        }
        Ok(())
    }

    /// Puts `older` (events held in memory, older than every spooled record) ahead of every
    /// unconfirmed record, and rewinds reading to the first of them: records read and not yet
    /// confirmed are read again. Written as a new file, fsynced and renamed over the log.
    /// Ignores the bound (these events are in memory already).
    pub fn spill(&mut self, older: &[Arc<Event>]) -> io::Result<()> {
        let again = self.outstanding.iter().filter(|o| o.id.is_some()).count() as u64;
        if older.is_empty() {
            self.outstanding.clear();
            self.read_pos = self.head;
            self.pending += again;
            return Ok(());
        }
        let records = older
            .iter()
            .map(|e| {
                record(e).map_err(|e| match e {
                    AppendError::Io(e) => e,
                    AppendError::Full => io::Error::other("full"),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        self.rewrite(&records)?;
        self.pending += again + older.len() as u64;
        Ok(())
    }

    /// Copies the unconfirmed records (after `records`) into a new file and renames it over
    /// the log; reading starts again at the first record.
    fn rewrite(&mut self, records: &[Vec<u8>]) -> io::Result<()> {
        let src = self.file.try_clone()?;
        let len = write_fresh(
            &self.path,
            records.iter().map(|r| r.as_slice()),
            Some((&src, (self.head, self.end))),
        )?;
        self.reopen(len)?;
        self.read_pos = HDR;
        self.outstanding.clear();
        Ok(())
    }

    fn reopen(&mut self, len: u64) -> io::Result<()> {
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.end = len;
        self.head = HDR;
        self.written_head = HDR;
        self.generation = 1;
        self.unsynced = false;
        Ok(())
    }

    /// Drops the confirmed prefix to make room: the unconfirmed tail goes to a new file.
    fn compact(&mut self) -> io::Result<()> {
        let shift = self.head - HDR;
        let src = self.file.try_clone()?;
        let len = write_fresh(
            &self.path,
            std::iter::empty(),
            Some((&src, (self.head, self.end))),
        )?;
        self.reopen(len)?;
        self.read_pos -= shift;
        for o in &mut self.outstanding {
            o.end -= shift;
        }
        tracing::info!(path = %self.path.display(), freed = shift, "Compacted the spool.");
        Ok(())
    }
}

/// Writes a new spool file next to `path` (header with the read offset at the first record,
/// then `records`, then the bytes `range` of `src`), fsyncs it, renames it over `path` and
/// fsyncs the directory. Returns its length.
fn write_fresh<'a>(
    path: &Path,
    records: impl Iterator<Item = &'a [u8]>,
    src: Option<(&File, (u64, u64))>,
) -> io::Result<u64> {
    let tmp = path.with_extension("spool.new");
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        w.write_all(&header_bytes(HDR, 1))?;
        let mut len = HDR;
        for r in records {
            w.write_all(r)?;
            len += r.len() as u64;
        }
        if let Some((src, (from, to))) = src {
            let mut buf = vec![0u8; 256 * 1024];
            let mut pos = from;
            while pos < to {
                let n = usize::try_from((to - pos).min(buf.len() as u64)).unwrap_or(buf.len());
                src.read_exact_at(&mut buf[..n], pos)?;
                w.write_all(&buf[..n])?;
                pos += n as u64;
            }
            len += to.saturating_sub(from);
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(len)
    })();
    match result {
        Ok(len) => {
            fs::rename(&tmp, path)?;
            sync_dir(path)?;
            Ok(len)
        }
        Err(error) => {
            let _ = fs::remove_file(&tmp);
            Err(error)
        }
    }
}

/// Converts a spool of the earlier format (`[u32 length][u8 endpoint][envelope]`, no header)
/// in place, streaming (new file + fsync + rename); a torn last record is dropped.
fn convert_legacy(path: &Path) -> io::Result<()> {
    let tmp = path.with_extension("spool.new");
    let result = (|| {
        let mut reader = BufReader::new(File::open(path)?);
        let mut w = BufWriter::with_capacity(256 * 1024, File::create(&tmp)?);
        w.write_all(&header_bytes(HDR, 1))?;
        let mut count = 0u64;
        loop {
            let mut len = [0u8; 4];
            if reader.read_exact(&mut len).is_err() {
                break;
            }
            let n = u64::from(u32::from_le_bytes(len));
            if n == 0 || n > MAX_RECORD {
                break;
            }
            let mut payload = vec![0u8; n as usize];
            if reader.read_exact(&mut payload).is_err() {
                break;
            }
            let mut digest = CRC.digest();
            digest.update(&len);
            digest.update(&payload);
            w.write_all(&REC_MAGIC.to_le_bytes())?;
            w.write_all(&len)?;
            w.write_all(&digest.finalize().to_le_bytes())?;
            w.write_all(&payload)?;
            count += 1;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(count)
    })();
    match result {
        Ok(count) => {
            fs::rename(&tmp, path)?;
            sync_dir(path)?;
            tracing::info!(path = %path.display(), records = count, "Converted a spool of the earlier format.");
            Ok(())
        }
        Err(error) => {
            let _ = fs::remove_file(&tmp);
            Err(error)
        }
    }
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

    fn events(n: usize) -> Vec<Arc<Event>> {
        let mut e = Enricher::default();
        (0..n).map(|_| wallet(&mut e)).collect()
    }

    fn read_all(spool: &mut Spool) -> Vec<Arc<Event>> {
        std::iter::from_fn(|| spool.read_next().unwrap()).collect()
    }

    fn seqs(evs: &[Arc<Event>]) -> Vec<u64> {
        evs.iter().map(|e| e.seq).collect()
    }

    fn file_len(dir: &Path) -> u64 {
        fs::metadata(dir.join("t.spool")).unwrap().len()
    }

    #[test]
    fn spooled_events_come_back_in_order_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(3);
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        for ev in &evs {
            spool.append(ev).unwrap();
        }
        let back = read_all(&mut spool);
        assert_eq!(seqs(&back), [1, 2, 3]);
        assert_eq!(back[0].json, evs[0].json);
        assert_eq!(back[0].data(), evs[0].data());
        assert_eq!(back[0].routing_key(), "balances.private");
    }

    #[test]
    fn the_read_offset_advances_on_confirm_only_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(3);
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        for ev in &evs {
            spool.append(ev).unwrap();
        }
        let read = read_all(&mut spool);
        spool.sync().unwrap();
        drop(spool);
        // Read but not confirmed: all three come back.
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        assert_eq!(spool.pending(), 3);
        let read2 = read_all(&mut spool);
        assert_eq!(seqs(&read2), [1, 2, 3]);
        // Confirming the second alone does not move the offset past the first.
        assert!(!spool.confirm([read[1].id]));
        spool.sync().unwrap();
        assert_eq!(Spool::open(dir.path(), "t").unwrap().pending(), 3);
        assert!(spool.confirm([read[0].id]));
        spool.sync().unwrap();
        let mut again = Spool::open(dir.path(), "t").unwrap();
        assert_eq!(again.pending(), 1);
        assert_eq!(seqs(&read_all(&mut again)), [3]);
        drop(again);
        // All confirmed: the log is cut back to its header.
        spool.confirm([read[2].id]);
        assert!(spool.is_empty());
        assert_eq!(file_len(dir.path()), HDR);
        assert_eq!(Spool::open(dir.path(), "t").unwrap().pending(), 0);
    }

    #[test]
    fn a_torn_tail_is_cut_off_counted_and_later_appends_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(4);
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        for ev in &evs[..2] {
            spool.append(ev).unwrap();
        }
        let good = spool.len_bytes();
        drop(spool);
        // A crash mid-write: half of a third record.
        let rec = record(&evs[2]).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("t.spool"))
            .unwrap();
        f.write_all(&rec[..rec.len() / 2]).unwrap();
        drop(f);
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        assert_eq!(spool.pending(), 2);
        assert_eq!(spool.unreadable(), 1, "the torn record is counted");
        assert_eq!(file_len(dir.path()), good);
        spool.append(&evs[3]).unwrap();
        assert_eq!(seqs(&read_all(&mut spool)), [1, 2, 4]);
    }

    #[test]
    fn a_corrupt_record_is_counted_and_skipped_and_the_next_ones_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(4);
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        let mut starts = vec![];
        for ev in &evs {
            starts.push(spool.len_bytes());
            spool.append(ev).unwrap();
        }
        drop(spool);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("t.spool"))
            .unwrap();
        // A flipped byte in the payload of record 2, and a length field of record 3 wrecked.
        f.write_all_at(b"X", starts[1] + REC_HDR + 20).unwrap();
        f.write_all_at(&u32::MAX.to_le_bytes(), starts[2] + 4)
            .unwrap();
        drop(f);
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        let back = read_all(&mut spool);
        assert_eq!(seqs(&back), [1, 4]);
        assert_eq!(
            spool.unreadable(),
            1,
            "one damaged stretch (records 2 and 3)"
        );
        // The damage is settled with the confirms: the offset moves past it.
        spool.confirm(back.iter().map(|e| e.id));
        assert!(spool.is_empty());
    }

    #[test]
    fn a_failed_write_is_cut_back_and_does_not_misalign_later_records() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(3);
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        spool.append(&evs[0]).unwrap();
        let good = spool.len_bytes();
        spool.fail_after = Some(30);
        assert!(matches!(spool.append(&evs[1]), Err(AppendError::Io(_))));
        assert_eq!(
            file_len(dir.path()),
            good,
            "nothing of the failed write is left"
        );
        spool.append(&evs[2]).unwrap();
        spool.sync().unwrap();
        assert_eq!(seqs(&read_all(&mut spool)), [1, 3]);
        let mut reopened = Spool::open(dir.path(), "t").unwrap();
        assert_eq!(seqs(&read_all(&mut reopened)), [1, 3]);
        assert_eq!(reopened.unreadable(), 0);
    }

    #[test]
    fn a_full_spool_refuses_appends_compacts_confirmed_records_and_takes_more_after() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(6);
        let rec = record(&evs[0]).unwrap().len() as u64;
        let mut spool = Spool::open_bounded(dir.path(), "t", HDR + 3 * rec + 10).unwrap();
        for ev in &evs[..3] {
            spool.append(ev).unwrap();
        }
        assert!(matches!(spool.append(&evs[3]), Err(AppendError::Full)));
        let first = spool.read_next().unwrap().unwrap();
        assert!(
            matches!(spool.append(&evs[3]), Err(AppendError::Full)),
            "read is not confirmed"
        );
        spool.confirm([first.id]);
        spool.append(&evs[3]).unwrap();
        assert!(spool.len_bytes() <= HDR + 3 * rec + 10);
        assert_eq!(seqs(&read_all(&mut spool)), [2, 3, 4]);
        drop(spool);
        let mut reopened = Spool::open(dir.path(), "t").unwrap();
        assert_eq!(seqs(&read_all(&mut reopened)), [2, 3, 4]);
    }

    #[test]
    fn spilled_memory_events_go_ahead_of_unconfirmed_records_and_reading_rewinds() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(5);
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        for ev in &evs[2..4] {
            spool.append(ev).unwrap();
        }
        let third = spool.read_next().unwrap().unwrap();
        assert!(spool.holds(third.id));
        spool.spill(&evs[..2]).unwrap();
        spool.append(&evs[4]).unwrap();
        assert_eq!(spool.pending(), 5);
        drop(spool);
        let mut reopened = Spool::open(dir.path(), "t").unwrap();
        assert_eq!(seqs(&read_all(&mut reopened)), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_spool_of_the_earlier_format_is_converted() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(2);
        let mut old = vec![];
        for ev in &evs {
            old.extend_from_slice(&(ev.json.len() as u32 + 1).to_le_bytes());
            old.push(0);
            old.extend_from_slice(&ev.json);
        }
        old.extend_from_slice(&[9, 0, 0]);
        fs::write(dir.path().join("t.spool"), old).unwrap();
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        assert_eq!(spool.pending(), 2);
        assert_eq!(seqs(&read_all(&mut spool)), [1, 2]);
    }

    #[test]
    fn sync_handles_cover_new_records_and_offset_moves_once() {
        let dir = tempfile::tempdir().unwrap();
        let evs = events(2);
        let mut spool = Spool::open(dir.path(), "t").unwrap();
        assert!(
            spool.sync_handle().unwrap().is_none(),
            "nothing written yet"
        );
        spool.append(&evs[0]).unwrap();
        spool.append(&evs[1]).unwrap();
        spool
            .sync_handle()
            .unwrap()
            .expect("records to sync")
            .sync()
            .unwrap();
        assert!(spool.sync_handle().unwrap().is_none(), "already synced");
        let first = spool.read_next().unwrap().unwrap();
        spool.confirm([first.id]);
        spool
            .sync_handle()
            .unwrap()
            .expect("the moved offset")
            .sync()
            .unwrap();
        assert_eq!(Spool::open(dir.path(), "t").unwrap().pending(), 1);
    }
}
