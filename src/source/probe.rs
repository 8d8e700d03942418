//! A cheap reachability probe of the exchange during an outage: a paced TCP connect to the
//! host of a Bybit endpoint (no TLS, no WebSocket, no connect token). A connection whose
//! connect failed at the network level waits for the earlier of its backoff delay and the
//! probe seeing the host come back, so it reconnects within about one probe interval of the
//! exchange accepting again instead of sleeping out a jittered delay of up to `reconnect_max`;
//! an attempt due while the probe still sees the host down is skipped (at most for
//! `reconnect_max`), so an outage costs few attempts and leaves the connect tokens for the end.
//!
//! Probes are shared by every connection to a host: a result younger than half the interval
//! is reused, so N connections waiting on one host cost about one TCP connect per interval (no
//! lock is held across the connect: a waiter dropped or parked mid-probe blocks no one), and
//! the first probe that sees the host come back wakes every connection waiting on
//! it. Only a transition counts (a probe saw the host unreachable, then a later one reachable):
//! a host that takes TCP connections but fails the WebSocket handshake never shortcuts the
//! backoff, so there is no hot loop.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

/// One host's probes: the last result (when it finished, whether it connected) and a counter
/// of unreachable → reachable transitions that waiters watch.
#[derive(Debug)]
struct Host {
    last: Mutex<Option<(Instant, bool)>>,
    back: watch::Sender<u64>,
}

impl Default for Host {
    fn default() -> Self {
        Self {
            last: Mutex::new(None),
            back: watch::channel(0).0,
        }
    }
}

impl Host {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<(Instant, bool)>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Slot = Arc<Host>;

/// Paced, shared TCP probes; `interval` zero disables them.
#[derive(Debug)]
pub(super) struct Prober {
    interval: Duration,
    hosts: Mutex<HashMap<String, Slot>>,
}

impl Prober {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// `host:port` of a `ws://` / `wss://` URL (the port defaulted by scheme).
    pub(super) fn address(url: &str) -> Option<String> {
        let url = url::Url::parse(url).ok()?;
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        Some(if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }

    /// Whether `addr` takes a TCP connection now (a result of any connection's probe younger
    /// than half the interval is reused).
    pub(super) async fn reachable(&self, addr: &str) -> bool {
        let host = self.host(addr);
        if let Some((at, ok)) = *host.last()
            && at.elapsed() < self.interval / 2
        {
            return ok;
        }
        let limit = self
            .interval
            .clamp(Duration::from_millis(200), Duration::from_secs(5));
        let ok = matches!(
            tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        );
        self.record(&host, ok);
        ok
    }

    /// Records a connect result of `addr` seen elsewhere (a failed WebSocket connect is a
    /// probe that saw the host down).
    pub(super) fn observe(&self, addr: &str, ok: bool) {
        self.record(&self.host(addr), ok);
    }

    fn record(&self, host: &Host, ok: bool) {
        let came_back = {
            let mut last = host.last();
            let came_back = ok && matches!(*last, Some((_, false)));
            *last = Some((Instant::now(), ok));
            came_back
        };
        if came_back {
            host.back.send_modify(|n| *n += 1);
        }
    }

    fn host(&self, addr: &str) -> Slot {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.entry(addr.to_owned()).or_default().clone()
    }

    /// Resolves once the probe, every interval, has seen `addr` unreachable and then reachable
    /// again. Never resolves when disabled, for an address it cannot parse, or while the host
    /// stays reachable (the caller's backoff decides then).
    pub(super) async fn recovered(&self, url: &str) {
        let addr = Self::address(url).filter(|_| !self.interval.is_zero());
        let Some(addr) = addr else {
            return std::future::pending().await;
        };
        let mut back = self.host(&addr).back.subscribe();
        let mut seen_down = false;
        loop {
            tokio::select! {
                // Another connection's probe saw the host come back.
                changed = back.changed() => if changed.is_ok() { return },
                () = tokio::time::sleep(self.interval) => {}
            }
            let ok = self.reachable(&addr).await;
            if ok && seen_down {
                tracing::info!(host = %addr, "Bybit host reachable again; reconnecting now.");
                return;
            }
            seen_down |= !ok;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_defaults_the_port_by_scheme() {
        assert_eq!(
            Prober::address("wss://stream.bybit.com/v5/public/linear").as_deref(),
            Some("stream.bybit.com:443")
        );
        assert_eq!(
            Prober::address("ws://127.0.0.1:9100/v5/private").as_deref(),
            Some("127.0.0.1:9100")
        );
        assert_eq!(Prober::address("not a url"), None);
    }

    #[tokio::test]
    async fn recovered_waits_for_down_then_up() {
        // A port bound, then released: the probe sees it down, then bound again: up.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let prober = Arc::new(Prober::new(Duration::from_millis(50)));
        let url = format!("ws://{addr}/v5/private");
        let waiter = tokio::spawn({
            let prober = prober.clone();
            async move { prober.recovered(&url).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "no recovery while the host is down");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let _listener = socket.listen(16).unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("recovered once the host listens")
            .unwrap();
    }

    #[tokio::test]
    async fn a_failed_connect_counts_as_the_host_seen_down() {
        // The host listens already; the connection's own refused connect was the "down".
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let prober = Arc::new(Prober::new(Duration::from_millis(50)));
        prober.observe(&addr, false);
        let url = format!("ws://{addr}/v5/public/linear");
        tokio::time::timeout(Duration::from_secs(5), prober.recovered(&url))
            .await
            .expect("recovered at the first probe that connects");
        // Reachable with no failure recorded in between: no transition, no wake-up.
        let again = tokio::time::timeout(Duration::from_millis(300), prober.recovered(&url));
        assert!(
            again.await.is_err(),
            "an up host alone never shortcuts the backoff"
        );
    }
}
