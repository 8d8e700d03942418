//! Issue 11, the frame path's allocations: once a topic has been seen, the in-process path from
//! the raw frame text to the envelope (`RawFrame::parse` → decode → classify → enrich) allocates
//! the envelope and nothing else. Alone in its test binary, so the counting allocator sees only
//! this test's allocations.

use async_tungstenite::tungstenite::Utf8Bytes;
use cap::Cap;
use ws_gateway::{
    event::{Category, Endpoint, RawFrame},
    pipeline::{classify::classify, decode::decode, enrich::Enricher},
};

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

#[test]
fn a_frame_of_a_known_topic_allocates_only_its_envelope() {
    let linear = Endpoint::Public(Category::Linear);
    let fixtures = [
        include_str!("fixtures/bybit/linear_publicTrade.json"),
        include_str!("fixtures/bybit/linear_tickers_delta.json"),
        include_str!("fixtures/bybit/linear_orderbook_50_delta.json"),
    ];
    for fixture in fixtures {
        // The text as the socket hands it over (shared bytes; a clone is a reference count).
        let text: Utf8Bytes = fixture.trim_end().to_owned().into();
        let mut enricher = Enricher::default();
        let mut run = || {
            let frame = RawFrame::parse(linear, 1, text.clone()).expect("a data frame");
            enricher.enrich(classify(decode(frame)))
        };
        // The first frames build the topic's entry and share the text.
        drop((run(), run()));

        let before = ALLOCATOR.total_allocated();
        let mut envelopes = 0;
        for _ in 0..100 {
            envelopes += run().json.len();
        }
        let allocated = ALLOCATOR.total_allocated() - before;
        assert_eq!(
            allocated,
            envelopes,
            "{}: {allocated} bytes allocated for 100 envelopes of {} bytes in all",
            &fixture[..40],
            envelopes
        );
    }
}
