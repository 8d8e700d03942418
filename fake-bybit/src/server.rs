//! The fake's socket side: accepting connections, the WebSocket handshake (unknown paths get
//! 404), and one task per connection that answers client ops and writes queued frames.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use async_tungstenite::tungstenite::{
    Message,
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
};
use futures::StreamExt;
use serde_json::Value;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Conn, Out, State, TopicChange,
    protocol::{self, ConnState, Flavor},
};

/// Accepts until `listening` is cancelled (the listener is then closed); connections live
/// until `stop` (the whole fake's).
pub(super) async fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    listening: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            () = listening.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.attempts += 1;
            if s.refuse {
                s.refused += 1;
                drop(s);
                drop(tcp);
                continue;
            }
        }
        // As a real exchange does: without it, Nagle holds each small frame until the
        // client's delayed ACK, and frames arrive in ~25-40 ms bursts.
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve(tcp, state.clone(), stop.clone()));
    }
}

// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn serve(tcp: tokio::net::TcpStream, state: Arc<Mutex<State>>, stop: CancellationToken) {
    let peer = tcp.peer_addr().ok();
    let path = Arc::new(Mutex::new(String::new()));
    let seen = path.clone();
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let p = req.uri().path().to_owned();
        if Flavor::of(&p).is_none() {
            let mut err = ErrorResponse::new(Some("not found".into()));
            *err.status_mut() = StatusCode::NOT_FOUND;
            return Err(err);
        }
        *seen.lock().unwrap() = p;
        Ok(resp)
    };
    let Ok(mut ws) = async_tungstenite::tokio::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let path = path.lock().unwrap().clone();
    let Some(flavor) = Flavor::of(&path) else {
        return;
    };
    let (tx, mut rx) = mpsc::channel(8192);
    let id = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.next_id += 1;
        let id = s.next_id;
        *s.accepted.entry(path.clone()).or_default() += 1;
        let proto = ConnState {
            flavor,
            conn_id: format!("fake{id:08x}-{}", path.rsplit('/').next().unwrap_or("")),
            topics: BTreeSet::new(),
            authed: false,
        };
        s.conns.insert(
            id,
            Conn {
                path: path.clone(),
                proto,
                tx,
            },
        );
        s.by_connection.insert(id, (path.clone(), Vec::new()));
        if let Some(peer) = peer {
            s.peers.insert(id, peer);
        }
        id
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => { let _ = ws.close(None).await; break; }
            out = rx.recv() => match out {
                Some(Out::Text(t)) => if send_batch(&mut ws, t, &mut rx).await.is_err() { break },
                Some(Out::Close) | None => { let _ = ws.close(None).await; break; }
                Some(Out::Abort) => break,
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let reply = {
                        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                        let value = serde_json::from_str::<Value>(&text)
                            .unwrap_or_else(|_| Value::String(text.to_string()));
                        s.requests.entry(path.clone()).or_default().push(value.clone());
                        if let Some((_, log)) = s.by_connection.get_mut(&id) {
                            log.push(value.clone());
                        }
                        let State { conns, rules, topic_log, .. } = &mut *s;
                        conns.get_mut(&id).and_then(|c| {
                            let before = c.proto.topics.clone();
                            let reply = protocol::answer(&mut c.proto, rules, &value);
                            log_topic_changes(topic_log, id, &c.path, &before, &c.proto.topics);
                            reply
                        })
                    };
                    if let Some(reply) = reply
                        && ws.send(Message::text(reply)).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    *state.lock().unwrap_or_else(|e| e.into_inner()).closes.entry(path.clone()).or_default() += 1;
                    break;
                }
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = s.conns.remove(&id) {
        log_topic_changes(
            &mut s.topic_log,
            id,
            &c.path,
            &c.proto.topics,
            &BTreeSet::new(),
        );
    }
}

/// Appends one [`TopicChange`] per topic gained or lost by connection `conn`.
fn log_topic_changes(
    log: &mut Vec<TopicChange>,
    conn: u64,
    path: &str,
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
) {
    let at = std::time::Instant::now();
    for (topics, held) in [
        (after.difference(before), true),
        (before.difference(after), false),
    ] {
        for topic in topics {
            log.push(TopicChange {
                at,
                conn,
                path: path.to_owned(),
                topic: topic.clone(),
                held,
            });
        }
    }
}

/// Writes `first` and whatever text frames are already queued behind it (at most 256) with one
/// flush, as a busy server does. A close or abort queued behind them is carried out here and
/// ends the connection (an `Err`).
async fn send_batch<S>(
    ws: &mut async_tungstenite::WebSocketStream<S>,
    first: String,
    rx: &mut mpsc::Receiver<Out>,
) -> Result<(), async_tungstenite::tungstenite::Error>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    use futures::SinkExt;
    ws.feed(Message::text(first)).await?;
    for _ in 0..256 {
        match rx.try_recv() {
            Ok(Out::Text(t)) => ws.feed(Message::text(t)).await?,
            Ok(other) => {
                ws.flush().await?;
                if matches!(other, Out::Close) {
                    let _ = ws.close(None).await;
                }
                return Err(async_tungstenite::tungstenite::Error::ConnectionClosed);
            }
            Err(_) => break,
        }
    }
    ws.flush().await
}
