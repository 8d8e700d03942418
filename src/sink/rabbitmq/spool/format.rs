//! The spool's on-disk format: the header slots, the checksummed records, reading them back
//! (skipping damage), rewriting the file (new + fsync + rename) and converting the format of
//! earlier versions. Documented in the parent module.

use std::{
    fs::{self, File},
    io::{self, BufReader, BufWriter, Read, Write},
    os::unix::fs::FileExt,
    path::Path,
};

use bytes::Bytes;

use crate::{
    event::{Category, Endpoint, Event},
    telemetry::SPOOL_UNREADABLE,
};

use super::AppendError;

pub(super) const FILE_MAGIC: &[u8; 8] = b"WSGSPOL2";
pub(super) const HDR: u64 = 64;
pub(super) const SLOT: u64 = 24;
pub(super) const REC_MAGIC: u32 = 0x5753_5052;
pub(super) const REC_HDR: u64 = 12;
/// Larger records are refused when written and taken for damage when read.
pub(super) const MAX_RECORD: u64 = 64 << 20;

pub(super) static CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

pub(super) fn endpoint_code(e: Endpoint) -> u8 {
    match e {
        Endpoint::Private => 0,
        Endpoint::Public(c) => 1 + c as u8,
    }
}

pub(super) fn endpoint_of(code: u8) -> Endpoint {
    match code {
        1..=4 => Endpoint::Public(Category::ALL[usize::from(code - 1)]),
        _ => Endpoint::Private,
    }
}

/// Rebuilds an event from its spooled envelope; `None` for a record that does not parse.
pub(super) fn event_of(code: u8, json: Vec<u8>) -> Option<Event> {
    Event::from_envelope(endpoint_of(code), Bytes::from(json))
}

pub(super) fn slot_bytes(head: u64, generation: u64) -> [u8; SLOT as usize] {
    let mut b = [0u8; SLOT as usize];
    b[..8].copy_from_slice(&head.to_le_bytes());
    b[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = CRC.checksum(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

pub(super) fn parse_slot(b: &[u8]) -> Option<(u64, u64)> {
    let crc = u32::from_le_bytes(b[16..20].try_into().ok()?);
    (CRC.checksum(&b[..16]) == crc).then(|| {
        (
            u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(b[8..16].try_into().unwrap_or_default()),
        )
    })
}

pub(super) fn header_bytes(head: u64, generation: u64) -> [u8; HDR as usize] {
    let mut b = [0u8; HDR as usize];
    b[..8].copy_from_slice(FILE_MAGIC);
    b[8..8 + SLOT as usize].copy_from_slice(&slot_bytes(head, generation));
    b
}

/// One encoded record.
pub(super) fn record(event: &Event) -> Result<Vec<u8>, AppendError> {
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
pub(super) fn record_at(file: &File, pos: u64, limit: u64) -> io::Result<Option<(Vec<u8>, u64)>> {
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
pub(super) fn next_good(file: &File, from: u64, limit: u64) -> io::Result<u64> {
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

pub(super) fn count_unreadable(path: &Path, from: u64, to: u64, what: &str) {
    metrics::counter!(SPOOL_UNREADABLE).increment(1);
    tracing::error!(
        path = %path.display(),
        from,
        to,
        what,
        "Skipped an unreadable spool record; the private events in it are lost."
    );
}

pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Writes a new spool file next to `path` (header with the read offset at the first record,
/// then `records`, then the bytes `range` of `src`), fsyncs it, renames it over `path` and
/// fsyncs the directory. Returns its length.
pub(super) fn write_fresh<'a>(
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
pub(super) fn convert_legacy(path: &Path) -> io::Result<()> {
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
