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
    io::{self, Read},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use uuid::Uuid;

use crate::{event::Event, telemetry::SPOOL_UNREADABLE};

/// How often written records are made durable (group commit).
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Default bound of the spool file (`publish.spool_max_bytes`).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

mod format;

use format::*;

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

#[cfg(test)]
mod tests;
