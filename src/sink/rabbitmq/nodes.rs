//! The broker nodes of `AMQP_URL` (one URL, or several comma-separated for a cluster) and which
//! one is in use.
//!
//! Nodes are tried in the order given, starting with the first; when a connection is lost (or a
//! connect fails) the publisher moves to the next and wraps around after the last, so every
//! node is tried once before a backoff delay. Moving to a node other than the one last in use
//! counts as a failover (`ws_gateway_broker_failovers_total`); `ws_gateway_broker_node{node}`
//! is 1 for the node in use (`host:port`, never the credentials).

use secrecy::{ExposeSecret, SecretString};

use crate::telemetry::{BROKER_FAILOVERS, BROKER_NODE};

/// One node: its URL (secret) and its label.
#[derive(Debug, Clone)]
struct Node {
    url: SecretString,
    label: String,
}

/// The node list and the cursor.
#[derive(Debug)]
pub struct Nodes {
    nodes: Vec<Node>,
    /// The node to try next.
    next: usize,
    /// The node last connected to.
    in_use: Option<usize>,
}

/// `host:port` of an `amqp://` URL (the label of its metric series).
pub fn node_label(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5672)
        ),
        Err(_) => "invalid".to_owned(),
    }
}

impl Nodes {
    /// The nodes of a (comma-separated) `AMQP_URL`.
    pub fn parse(urls: &SecretString) -> Self {
        let nodes: Vec<Node> = urls
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| Node {
                url: SecretString::from(u.to_owned()),
                label: node_label(u),
            })
            .collect();
        for n in &nodes {
            metrics::gauge!(BROKER_NODE, "node" => n.label.clone()).set(0.0);
        }
        Self {
            nodes,
            next: 0,
            in_use: None,
        }
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len().max(1)
    }

    /// The URL and label of the node to try now (`amqp://` with nothing to connect to when the
    /// list is empty, which fails the connect).
    pub fn current(&self) -> (&str, &str) {
        self.nodes
            .get(self.next)
            .map_or(("", "none"), |n| (n.url.expose_secret(), n.label.as_str()))
    }

    /// The current node failed or was lost: the next one is tried (wrapping around).
    pub fn advance(&mut self) {
        if !self.nodes.is_empty() {
            self.next = (self.next + 1) % self.nodes.len();
        }
    }

    /// Connected to the current node; returns whether that is a failover (another node than
    /// the one last in use).
    pub fn connected(&mut self) -> bool {
        let failover = self.in_use.is_some_and(|i| i != self.next);
        if failover {
            metrics::counter!(BROKER_FAILOVERS).increment(1);
        }
        if let Some(n) = self.nodes.get(self.next) {
            metrics::gauge!(BROKER_NODE, "node" => n.label.clone()).set(1.0);
        }
        self.in_use = Some(self.next);
        failover
    }

    /// The connection to the node in use ended.
    pub fn disconnected(&mut self) {
        if let Some(n) = self.in_use.and_then(|i| self.nodes.get(i)) {
            metrics::gauge!(BROKER_NODE, "node" => n.label.clone()).set(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_tried_in_order_and_wrap_around() {
        let mut n = Nodes::parse(&SecretString::from(
            "amqp://u:p@a:5690/%2f, amqp://u:p@b:5691/%2f,amqp://c".to_owned(),
        ));
        assert_eq!(n.len(), 3);
        assert_eq!(n.current(), ("amqp://u:p@a:5690/%2f", "a:5690"));
        assert!(!n.connected(), "the first connect is no failover");
        n.advance();
        assert_eq!(n.current().1, "b:5691");
        n.advance();
        assert_eq!(n.current().1, "c:5672");
        n.advance();
        assert_eq!(n.current().1, "a:5690");
        assert!(!n.connected(), "back on the same node");
        n.advance();
        assert!(n.connected(), "another node");
        let one = Nodes::parse(&SecretString::from("amqp://x/".to_owned()));
        assert_eq!(one.len(), 1);
    }
}
