//! Issue 12, fuzzing: the `/ws` client message parser's allocation is bounded by its input. Alone
//! in its test binary, so the counting allocator sees only this test's allocations.

use cap::Cap;
use ws_gateway::downstream::protocol;

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

const MIB: usize = 1 << 20;

/// Bytes allocated (in total, not just at the peak) while `f` runs.
fn allocated_by(f: impl FnOnce()) -> usize {
    let before = ALLOCATOR.total_allocated();
    f();
    ALLOCATOR.total_allocated() - before
}

/// A text of about `size` bytes: `head`, `unit` repeated, `tail`.
fn message(head: &str, unit: &str, tail: &str, size: usize) -> String {
    let mut s = String::with_capacity(size + head.len() + tail.len());
    s.push_str(head);
    while s.len() + unit.len() + tail.len() <= size {
        s.push_str(unit);
    }
    s.push_str(tail);
    s
}

#[test]
fn a_one_mib_client_message_allocates_about_its_size_at_most() {
    let cases = [
        // Many tiny topics (a `String` each would cost several times the input).
        message(r#"{"op":"subscribe","topics":["a""#, r#","a""#, "]}", MIB),
        message(
            r#"{"action":"subscribe","symbols":["a""#,
            r#","a""#,
            "]}",
            MIB,
        ),
        // A deep or wide req_id (a JSON tree costs far more than its text).
        message(r#"{"op":"ping","req_id":[0"#, ",0", "]}", MIB),
        message(r#"{"op":"ping","req_id":{"a":0"#, r#","a":0"#, "}}", MIB),
        // One huge string echoed in the error.
        message(r#"{"op":""#, "x", r#""}"#, MIB),
        message(r#"{"action":""#, "x", r#""}"#, MIB),
        message(r#"{"op":"ping","req_id":""#, "x", r#""}"#, MIB),
        // Not JSON at all.
        message("[", "[", "", MIB),
        message("", "x", "", MIB),
    ];
    for text in &cases {
        let mut command = None;
        let bytes = allocated_by(|| command = Some(protocol::parse(text)));
        let reply_len = format!("{command:?}").len();
        println!(
            "{:>60}… {} bytes → {} bytes allocated (reply/command {} bytes)",
            &text[..text.len().min(40)],
            text.len(),
            bytes,
            reply_len
        );
        assert!(
            bytes <= 4 * text.len() + 64 * 1024,
            "{} bytes allocated for a {}-byte message starting {:?}",
            bytes,
            text.len(),
            &text[..60.min(text.len())]
        );
    }
}
