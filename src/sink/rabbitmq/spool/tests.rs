use std::io::Write;

use super::*;
use crate::event::Endpoint;
use crate::pipeline::{classify::classify, decode::decode, decode::tests::frame, enrich::Enricher};

fn wallet(e: &mut Enricher) -> Arc<Event> {
    let text = include_str!("../../../../tests/fixtures/bybit/wallet.json").trim_end();
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
