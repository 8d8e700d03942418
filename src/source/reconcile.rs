//! Subscription bookkeeping, pure and synchronous: chunking topics into requests, sharding a
//! category's topics onto connections, and matching acks to requests by `req_id`.
//!
//! A connection owns one [`Ledger`]: what Bybit confirmed and which requests are in flight.
//! It diffs the wanted set against it ([`Ledger::plan`]) and feeds it every ack.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::time::{Duration, Instant};

use crate::wire::Ack;

/// Characters a topic adds to a connection's args (the topic, its quotes and a comma).
pub fn topic_chars(topic: &str) -> usize {
    topic.len() + 3
}

/// Spreads `desired` topics over shards of at most `max_chars` args characters and `max_args`
/// topics each. Topics keep the shard they had in `current`; new ones go to the first shard
/// with room.
pub fn assign_shards(
    desired: &BTreeSet<String>,
    current: &HashMap<String, usize>,
    max_chars: usize,
    max_args: usize,
) -> Vec<BTreeSet<String>> {
    let mut shards: Vec<BTreeSet<String>> = Vec::new();
    let mut load: Vec<usize> = Vec::new();
    fn place(shards: &mut Vec<BTreeSet<String>>, load: &mut Vec<usize>, i: usize, t: &str) {
        while shards.len() <= i {
            shards.push(BTreeSet::new());
            load.push(0);
        }
        load[i] += topic_chars(t);
        shards[i].insert(t.to_owned());
    }
    for t in desired {
        if let Some(&i) = current.get(t) {
            place(&mut shards, &mut load, i, t);
        }
    }
    for t in desired.iter().filter(|t| !current.contains_key(*t)) {
        let need = topic_chars(t);
        let i = (0..load.len())
            .position(|i| load[i] + need <= max_chars && shards[i].len() < max_args)
            .unwrap_or(load.len());
        place(&mut shards, &mut load, i, t);
    }
    while shards.len() > 1 && shards.last().is_some_and(BTreeSet::is_empty) {
        shards.pop();
    }
    shards
}

/// Subscribe or unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Subscribe,
    Unsubscribe,
}

impl Op {
    /// The wire `op`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
        }
    }
}

/// One request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub req_id: String,
    pub op: Op,
    pub topics: Vec<String>,
}

#[derive(Debug, Clone)]
struct InFlight {
    op: Op,
    topics: Vec<String>,
    sent_at: Instant,
}

/// What an ack meant.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Subscribed (or already subscribed).
    pub activated: Vec<String>,
    /// Rejected, with Bybit's words.
    pub failed: Vec<(String, String)>,
    /// Neither: sent again by the next plan.
    pub retry: Vec<String>,
    /// Confirmed unsubscribed.
    pub unsubscribed: Vec<String>,
}

/// Confirmed topics and requests in flight on one connection session.
#[derive(Debug)]
pub struct Ledger {
    prefix: String,
    next: u64,
    confirmed: BTreeSet<String>,
    in_flight: BTreeMap<u64, InFlight>,
}

impl Ledger {
    /// `prefix` makes `req_id`s unique per connection (`"<conn>-"`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: 0,
            confirmed: BTreeSet::new(),
            in_flight: BTreeMap::new(),
        }
    }

    /// Topics Bybit confirmed.
    pub fn confirmed(&self) -> &BTreeSet<String> {
        &self.confirmed
    }

    /// Whether any request waits for its ack.
    pub fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// A fresh unique `req_id` (also used for auth and ping).
    pub fn next_req_id(&mut self) -> String {
        self.next += 1;
        format!("{}{}", self.prefix, self.next)
    }

    fn in_flight_topics(&self, op: Op) -> BTreeSet<&str> {
        self.in_flight
            .values()
            .filter(|f| f.op == op)
            .flat_map(|f| f.topics.iter().map(String::as_str))
            .collect()
    }

    /// Requests that move the confirmed set toward `want`, at most `per_request` args each.
    pub fn plan(
        &mut self,
        want: &BTreeSet<String>,
        per_request: usize,
        now: Instant,
    ) -> Vec<Request> {
        let subscribing = self.in_flight_topics(Op::Subscribe);
        let to_sub: Vec<String> = want
            .iter()
            .filter(|t| !self.confirmed.contains(*t) && !subscribing.contains(t.as_str()))
            .cloned()
            .collect();
        let to_unsub: Vec<String> = self.confirmed.difference(want).cloned().collect();
        let mut out = self.requests(Op::Unsubscribe, &to_unsub, per_request, now);
        out.extend(self.requests(Op::Subscribe, &to_sub, per_request, now));
        out
    }

    /// Unsubscribe then subscribe `topic` again (order-book resync).
    pub fn resync(&mut self, topic: &str, now: Instant) -> Vec<Request> {
        let t = vec![topic.to_owned()];
        let mut out = self.requests(Op::Unsubscribe, &t, 1, now);
        out.extend(self.requests(Op::Subscribe, &t, 1, now));
        out
    }

    fn requests(&mut self, op: Op, topics: &[String], per: usize, now: Instant) -> Vec<Request> {
        let mut out = Vec::new();
        for chunk in topics.chunks(per.max(1)) {
            if op == Op::Unsubscribe {
                for t in chunk {
                    // Optimistic: a topic being unsubscribed is no longer ours.
                    self.confirmed.remove(t);
                }
            }
            let req_id = self.next_req_id();
            self.in_flight.insert(
                self.next,
                InFlight {
                    op,
                    topics: chunk.to_vec(),
                    sent_at: now,
                },
            );
            out.push(Request {
                req_id,
                op,
                topics: chunk.to_vec(),
            });
        }
        out
    }

    fn take_matching(&mut self, ack: &Ack) -> Option<InFlight> {
        match ack.req_id.as_deref().filter(|r| !r.is_empty()) {
            Some(req_id) => {
                let n = req_id.strip_prefix(&self.prefix)?.parse::<u64>().ok()?;
                self.in_flight.remove(&n)
            }
            None => {
                // No req_id echoed: the option shape names topics, else the oldest request.
                let named: BTreeSet<&String> = ack
                    .success_topics
                    .iter()
                    .chain(ack.fail_topics.iter())
                    .flatten()
                    .collect();
                let key = self
                    .in_flight
                    .iter()
                    .find(|(_, f)| named.is_empty() || f.topics.iter().any(|t| named.contains(t)))
                    .map(|(k, _)| *k)?;
                self.in_flight.remove(&key)
            }
        }
    }

    /// Applies an ack; `None` when it matches no request of ours.
    pub fn on_ack(&mut self, ack: &Ack) -> Option<AckOutcome> {
        let req = self.take_matching(ack)?;
        let mut out = AckOutcome::default();
        if req.op == Op::Unsubscribe {
            out.unsubscribed = req.topics;
            return Some(out);
        }
        if let (Some(ok), Some(failed)) = (&ack.success_topics, &ack.fail_topics) {
            for t in req.topics {
                if ok.contains(&t) || (ack.success && failed.is_empty() && ok.is_empty()) {
                    out.activated.push(t);
                } else if failed.contains(&t) {
                    let msg = if ack.ret_msg.is_empty() {
                        "subscribe failed"
                    } else {
                        &ack.ret_msg
                    };
                    out.failed.push((t, msg.to_owned()));
                } else {
                    out.retry.push(t);
                }
            }
        } else if ack.success {
            out.activated = req.topics;
        } else {
            let named = named_topics(&ack.ret_msg);
            let already = ack.ret_msg.contains("already subscribed");
            let any_named = req.topics.iter().any(|t| named.contains(&t.as_str()));
            for t in req.topics {
                let is_named = named.contains(&t.as_str());
                match (already, any_named, is_named) {
                    (true, false, _) | (true, true, true) => out.activated.push(t),
                    (false, false, _) | (false, true, true) => {
                        out.failed.push((t, ack.ret_msg.clone()));
                    }
                    (_, true, false) => out.retry.push(t),
                }
            }
        }
        self.confirmed.extend(out.activated.iter().cloned());
        Some(out)
    }

    /// Removes and returns requests unanswered for `timeout` (their topics are planned again).
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Request> {
        let late: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.sent_at) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        late.into_iter()
            .filter_map(|k| {
                self.in_flight.remove(&k).map(|f| Request {
                    req_id: format!("{}{k}", self.prefix),
                    op: f.op,
                    topics: f.topics,
                })
            })
            .collect()
    }

    /// Forgets everything (the session ended).
    pub fn reset(&mut self) {
        self.confirmed.clear();
        self.in_flight.clear();
    }
}

/// Topics named in a `ret_msg` such as `error:handler not found,topic:orderbook.1.X`.
pub fn named_topics(ret_msg: &str) -> Vec<&str> {
    ret_msg
        .split("topic:")
        .skip(1)
        .flat_map(|rest| rest.split([',', ' ', ';']).next())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
