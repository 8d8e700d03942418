//! Unit tests of Ownership: admission fenced by deadline and tenure, and units being handed out.

use std::time::Duration;

use super::*;
use crate::event::Category;

#[test]
fn admit_is_fenced_by_the_deadline_and_the_tenure() {
    let o = Ownership::member("a");
    let k = TopicKey::new(Endpoint::Public(Category::Spot), "tickers.X");
    let before = Instant::now();
    assert_eq!(o.admit(&k, before), None);
    let now = Instant::now();
    o.renewed(
        now,
        now + Duration::from_secs(60),
        [(Unit::of(&k), 3)].into(),
    );
    assert!(o.owns(&k));
    assert_eq!(o.admit(&k, Instant::now()), Some(3));
    // Received before the tenure began: someone else's.
    assert_eq!(o.admit(&k, before), None);
    // A deadline in the past fences at once, whatever the controller does.
    let now = Instant::now();
    o.renewed(now, now, [(Unit::of(&k), 3)].into());
    assert_eq!(o.admit(&k, Instant::now()), None);
    assert!(!o.owns(&k));
    let solo = Ownership::solo("s");
    assert_eq!(solo.admit(&k, before), Some(0));
}

#[test]
fn a_unit_being_handed_out_stays_subscribed_and_its_events_wait_for_the_outcome() {
    let o = Ownership::member("a");
    let endpoint = Endpoint::Public(Category::Linear);
    let k = TopicKey::new(endpoint, "publicTrade.X");
    let unit = Unit::of(&k);
    o.set_desired([k.clone()].into(), ClusterView::default());
    let now = Instant::now();
    o.renewed(
        now,
        now + Duration::from_secs(60),
        [(unit.clone(), 2)].into(),
    );
    let topics = BTreeSet::from(["publicTrade.X".to_owned()]);
    assert_eq!(o.upstream(endpoint), topics);
    // The transfer statement is in flight: held, not published; still subscribed.
    let held = o.take_out(&unit).expect("held");
    let during = Instant::now();
    assert_eq!(o.decide(&k, during), Admit::Hold);
    assert_eq!(o.upstream(endpoint), topics);
    // It did not happen: ours again, same epoch; what came meanwhile is published.
    o.put_back(unit.clone(), held);
    assert_eq!(o.decide(&k, during), Admit::Publish(2));
    // It happened: the taker has them; the source lets go.
    o.take_out(&unit).expect("held");
    o.handed_out(&unit);
    assert_eq!(o.decide(&k, during), Admit::Drop);
    assert!(o.upstream(endpoint).is_empty());
}
