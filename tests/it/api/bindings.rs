//! Queue bindings follow API subscriptions: bound on create, removed on cancel only when no
//! other active subscription of the service uses the routing key. The routes run on their own
//! `AppState` here, so the test holds the bindings handle.

use std::sync::Arc;

use poem::listener::{Acceptor, Listener, TcpListener};
use secrecy::SecretString;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    event::EventClass,
    health::HealthBoard,
    state::AppState,
    store,
    subscriptions::{Binding, Capabilities, QueueBindings, SubscriptionRegistry, Subscriptions},
};

use super::*;

fn binding(service: &str, class: EventClass, key: &str) -> Binding {
    Binding {
        service: service.into(),
        class,
        routing_key: key.into(),
    }
}

#[tokio::test]
async fn bindings_are_added_on_create_and_removed_when_no_subscription_uses_them() {
    crate::support::init_test_log();
    let dir = tempfile::tempdir().unwrap();
    let db = store::connect(&SecretString::from(sqlite_url(dir.path())))
        .await
        .unwrap();
    let bindings = QueueBindings::default();
    let state = AppState {
        health: Arc::new(HealthBoard::default()),
        subscriptions: Subscriptions::new(
            SubscriptionRegistry::new_handle(),
            bindings.clone(),
            db.clone(),
            Capabilities {
                private_available: true,
                broker_configured: false,
                shared_status: false,
            },
        ),
        db,
        metrics: ws_gateway::telemetry::metrics_handle(),
        events: broadcast::channel(16).0,
        api_key: SecretString::from(TEST_API_KEY),
        private_available: true,
        broker_configured: false,
        downstream: Default::default(),
        http: Default::default(),
        shutdown: CancellationToken::new(),
        ownership: ws_gateway::cluster::Ownership::solo("test"),
    };
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let server =
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(ws_gateway::api::routes(state)));
    let base = format!("http://{addr}/api/v1/subscriptions");
    let create = |body: Value| client().post(&base).json(&body).send();

    let trades: Value =
        create(json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "svc"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let order: Value = create(json!({"channel_type": "order", "requesting_service": "svc"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_linear: Value =
        create(json!({"channel_type": "order", "category": "linear", "requesting_service": "svc"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(order_linear["topic"], "order.linear");
    let trade_binding = binding("svc", EventClass::Trades, "trades.linear.BTCUSDT");
    let order_binding = binding("svc", EventClass::Orders, "orders.private");
    assert!(bindings.snapshot().contains(&trade_binding));
    assert!(bindings.snapshot().contains(&order_binding));
    assert_eq!(
        bindings.snapshot().len(),
        2,
        "order and order.linear share a routing key"
    );

    let del = |id: &Value| {
        client()
            .delete(format!("{base}/{}", id.as_str().unwrap()))
            .send()
    };
    del(&order["id"]).await.unwrap();
    assert!(
        bindings.snapshot().contains(&order_binding),
        "order.linear still uses it"
    );
    del(&order_linear["id"]).await.unwrap();
    assert!(!bindings.snapshot().contains(&order_binding));
    del(&trades["id"]).await.unwrap();
    assert!(bindings.snapshot().is_empty());
    server.abort();
}
