//! A TCP proxy of the test's own, to cut a connection to a shared service (RabbitMQ,
//! PostgreSQL) without touching the service. `cut()` closes every proxied connection and
//! refuses new ones until `restore()`; `black_hole()` keeps every connection open and accepts
//! new ones but forwards nothing either way (a broker that never answers).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// A running proxy from a local ephemeral port to `upstream`.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// 1 while black-holed.
    mode: Arc<AtomicU8>,
    /// Bumped on every cut; live pipes watch it and close.
    generation: watch::Sender<u64>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream` (e.g. `127.0.0.1:5672`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let mode = Arc::new(AtomicU8::new(0));
        let generation = watch::Sender::new(0u64);
        let upstream = upstream.to_owned();
        let (open2, mode2, gen2) = (open.clone(), mode.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !open2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = gen2.subscribe();
                let mode = mode2.clone();
                tokio::spawn(async move {
                    if mode.load(Ordering::SeqCst) == 1 {
                        // Accepted, never answered: held until the next change.
                        let _held = client;
                        let _ = cut.changed().await;
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut c, mut s) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut c, &mut s) => {}
                        _ = cut.changed() => {}
                    }
                    if mode.load(Ordering::SeqCst) == 1 {
                        // Black-holed: both sockets stay open, nothing moves.
                        let _held = (c, s);
                        let _ = cut.changed().await;
                    }
                });
            }
        });
        Self {
            addr,
            open,
            mode,
            generation,
        }
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.mode.store(0, Ordering::SeqCst);
        self.open.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Stops forwarding on every connection without closing it; new connections are
    /// accepted and never answered.
    pub fn black_hole(&self) {
        self.mode.store(1, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// `host:port` of the proxy.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }
}
