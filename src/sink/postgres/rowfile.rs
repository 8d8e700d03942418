//! The balance rows the database could not take, on local disk: `<spool_dir>/<prefix>.rows`.
//!
//! Written when the database is away at stop (every row still in memory) and when memory is
//! full (a row the tee or the row buffer would otherwise drop); read back at the next start, or
//! once the database writes again, and removed when every row is in the database. One JSON
//! object per line, fsynced after each append; a torn last line (a crash mid-append) is skipped,
//! counted and logged. Inserts are idempotent on `(event_id, coin)`, so a replay interrupted by
//! a crash writes nothing twice.
//!
//! Replay never races an append: the file is first renamed to `<…>.rows.replay` (under the
//! append lock), new overflow goes to a fresh `<…>.rows`, and the `.replay` file is removed only
//! after its rows are written.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::store::balances::NewBalance;

/// The overflow/stop file of balance rows.
#[derive(Debug)]
pub struct RowFile {
    path: PathBuf,
    replay: PathBuf,
    lock: Mutex<()>,
    /// Set by every append: the writer replays once the database takes rows again.
    pending: AtomicBool,
}

impl RowFile {
    /// The file at `path` (its directory is created on first append).
    pub fn new(path: PathBuf) -> Self {
        let mut replay = path.clone().into_os_string();
        replay.push(".replay");
        let pending = path.exists() || Path::new(&replay).exists();
        Self {
            path,
            replay: replay.into(),
            lock: Mutex::new(()),
            pending: AtomicBool::new(pending),
        }
    }

    /// Where the rows go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when rows wait on disk.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Appends `rows` and fsyncs. Local disk only: never waits on the database.
    pub fn append<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a NewBalance>,
    ) -> std::io::Result<usize> {
        let mut buf = Vec::new();
        let mut n = 0;
        for row in rows {
            serde_json::to_writer(&mut buf, row).map_err(std::io::Error::other)?;
            buf.push(b'\n');
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&buf)?;
        file.sync_data()?;
        self.pending.store(true, Ordering::SeqCst);
        Ok(n)
    }

    /// Takes the waiting rows for a replay: moves the file aside (unless an earlier replay's
    /// file is still there) and reads it. Call [`RowFile::done`] once they are written.
    pub fn take(&self) -> std::io::Result<Vec<NewBalance>> {
        {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.pending.store(false, Ordering::SeqCst);
            if !self.replay.exists() {
                match std::fs::rename(&self.path, &self.replay) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                    Err(e) => return Err(e),
                }
            } else if self.path.exists() {
                // Both exist: the next take picks the newer file up.
                self.pending.store(true, Ordering::SeqCst);
            }
        }
        let reader = BufReader::new(File::open(&self.replay)?);
        let (mut rows, mut unreadable) = (Vec::new(), 0usize);
        for line in reader.split(b'\n') {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<NewBalance>(&line) {
                Ok(row) => rows.push(row),
                Err(_) => unreadable += 1,
            }
        }
        if unreadable > 0 {
            tracing::error!(
                unreadable,
                file = %self.replay.display(),
                "Balance rows on disk could not be read (torn write); they are lost."
            );
        }
        Ok(rows)
    }

    /// The rows of the last [`RowFile::take`] are in the database: removes their file.
    pub fn done(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.replay) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Marks a failed replay for a later retry.
    pub fn retry_later(&self) {
        self.pending.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::postgres::wallet;

    #[test]
    fn rows_survive_a_round_trip_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool").join("gw.rows");
        let event =
            wallet::event_from_frame(include_str!("../../../tests/fixtures/bybit/wallet.json"))
                .unwrap();
        let rows = wallet::rows(&event).unwrap();
        let file = RowFile::new(path.clone());
        assert!(!file.pending());
        assert_eq!(file.append(&rows).unwrap(), 3);
        // A crash mid-append leaves half a line.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":0,\"ev")
            .unwrap();
        let file = RowFile::new(path.clone());
        assert!(file.pending());
        let back = file.take().unwrap();
        assert_eq!(back, rows);
        // Not confirmed yet: a restart finds them again.
        assert_eq!(RowFile::new(path.clone()).take().unwrap(), rows);
        file.done().unwrap();
        assert!(RowFile::new(path).take().unwrap().is_empty());
    }
}
