//! The private session's catch-up gate: the small interface through which the source asks for
//! a REST catch-up after a private (re)connect without importing the catch-up wing (`app.rs`
//! wires the catch-up engine in as a [`PrivateHook`]).
//!
//! Once `auth` is acked the session closes its gate: live private data frames wait (at most
//! [`GateConfig::max_hold`] and [`GateConfig::max_frames`]). When every private subscription
//! is answered it calls [`PrivateHook::start`] (and again for topics confirmed later in the
//! session, without holding anything); the hook's task sends the recovered frames into
//! the source's output itself, then signals `done`, and the session releases what it held, so
//! per topic the recovered events go first. The session keeps reading and pinging meanwhile.

use std::{collections::VecDeque, fmt, sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::event::RawFrame;

/// What a catch-up is asked to do for one private session.
#[derive(Debug)]
pub struct CatchupStart {
    /// The session's connection number (recovered frames carry it).
    pub connection_id: u64,
    /// The private topics Bybit confirmed on this session (`order`, `execution.linear`, ...).
    pub topics: Vec<String>,
    /// The source's output: recovered frames go here, with the same seq counters as live ones.
    pub out: mpsc::Sender<RawFrame>,
    /// Sent once the recovered frames are in `out` (or the first attempt failed).
    pub done: oneshot::Sender<()>,
    /// When `auth` was acked (for the recovery latency).
    pub authed_at: std::time::Instant,
}

/// The catch-up side, as the source sees it.
pub trait PrivateHook: Send + Sync + fmt::Debug {
    /// Starts a catch-up in a task of its own; must not block.
    fn start(&self, request: CatchupStart);
    /// A live private data frame is about to be published (or held for it): records its items
    /// as published. `false` when every item in it was already published by a catch-up (the
    /// session then drops the frame: no repeats).
    fn live(&self, frame: &RawFrame) -> bool;
}

/// The gate's bounds and the hook.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// The catch-up engine.
    pub hook: Arc<dyn PrivateHook>,
    /// Longest time a live private frame is held while catch-up runs.
    pub max_hold: Duration,
    /// Most frames held; past it everything held is released.
    pub max_frames: usize,
}

/// One session's gate.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Closed since (auth ack); `None` when open.
    closed_at: Option<Instant>,
    held: VecDeque<RawFrame>,
    /// Topics of this session a catch-up was asked for.
    pub caught_up: std::collections::BTreeSet<String>,
    /// Signalled by the hook when the recovered frames are out.
    pub done: Option<oneshot::Receiver<()>>,
}

impl Gate {
    /// Closes the gate (auth acked).
    pub fn close(&mut self) {
        self.closed_at = Some(Instant::now());
    }

    /// Whether live frames are held now.
    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some()
    }

    /// Holds `frame`; `false` when the bound on frames is reached (the caller releases).
    pub fn hold(&mut self, frame: RawFrame, max_frames: usize) -> bool {
        self.held.push_back(frame);
        self.held.len() < max_frames.max(1)
    }

    /// Whether the gate has been closed longer than `max_hold`.
    pub fn overdue(&self, max_hold: Duration) -> bool {
        self.closed_at.is_some_and(|t| t.elapsed() >= max_hold)
    }

    /// Opens the gate; returns the held frames, oldest first.
    pub fn open(&mut self) -> VecDeque<RawFrame> {
        self.closed_at = None;
        std::mem::take(&mut self.held)
    }

    /// How many frames are held.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Endpoint;

    fn frame(n: u64) -> RawFrame {
        let text = format!(r#"{{"id":"f{n}","topic":"execution","creationTime":{n},"data":[]}}"#);
        RawFrame::parse(Endpoint::Private, 1, text).unwrap()
    }

    #[test]
    fn the_gate_holds_in_order_up_to_its_bound_and_opens_with_everything() {
        let mut gate = Gate::default();
        assert!(!gate.is_closed());
        gate.close();
        assert!(gate.is_closed() && !gate.overdue(Duration::from_secs(5)));
        assert!(gate.hold(frame(1), 3));
        assert!(gate.hold(frame(2), 3));
        assert!(!gate.hold(frame(3), 3), "the third reaches the bound");
        let held: Vec<String> = gate.open().iter().map(|f| f.text().to_owned()).collect();
        assert_eq!(held.len(), 3);
        assert!(held[0].contains("f1") && held[2].contains("f3"));
        assert!(!gate.is_closed() && gate.held() == 0);
        assert!(
            !gate.overdue(Duration::ZERO),
            "an open gate is never overdue"
        );
        gate.close();
        assert!(gate.overdue(Duration::ZERO));
    }
}
