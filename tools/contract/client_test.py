"""Uses the client openapi-python-client generated from the gateway's /openapi.json, unchanged,
against a running gateway (no broker, Bybit unreachable, empty database; see run.sh).

Usage: PYTHONPATH=<dir holding ws_gateway_client> python client_test.py BASE_URL API_KEY
"""

import secrets
import sys
import uuid

from ws_gateway_client import AuthenticatedClient, Client
from ws_gateway_client.api.balances import balance_history, latest_balances
from ws_gateway_client.api.health import health, ready
from ws_gateway_client.api.subscriptions import (
    cancel_service_subscriptions,
    cancel_subscription,
    create_subscription,
    get_subscription,
    list_subscriptions,
)
from ws_gateway_client.models import (
    Balances,
    Category,
    ChannelType,
    ComponentState,
    CreateSubscription,
    ErrorBody,
    Health,
    OverallStatus,
    Ready,
    Subscription,
    SubscriptionStatus,
)

base, key = sys.argv[1], sys.argv[2]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


api = AuthenticatedClient(
    base_url=base, token=key, prefix="", auth_header_name="X-API-Key", raise_on_unexpected_status=True
)
anon = Client(base_url=base, raise_on_unexpected_status=True)
service = "contract-py-" + secrets.token_hex(4)

# /health and /ready (no key)
r = health.sync_detailed(client=anon)
check(r.status_code in (200, 503) and isinstance(r.parsed, Health), f"health: {r}")
h = r.parsed
check(h.status in (OverallStatus.DEGRADED, OverallStatus.UNHEALTHY), f"health status {h.status}")
check(h.last_heartbeat_at is None, "no pong yet: last_heartbeat_at is null")
check(h.components.database == ComponentState.UP, f"database {h.components.database}")
check(h.components.rabbitmq == ComponentState.DISABLED, f"rabbitmq {h.components.rabbitmq}")
for c in h.connections:
    check(c.last_heartbeat_at is None, f"connection {c.endpoint} never up")
    check(c.last_error is None or isinstance(c.last_error, str), "last_error")
r = ready.sync_detailed(client=anon)
check(isinstance(r.parsed, Ready) and r.parsed.ready == (r.status_code == 200), f"ready: {r}")

# create (201), the same again (200, the same one)
body = CreateSubscription(channel_type=ChannelType.TRADES, symbol="BTCUSDT", requesting_service=service)
r = create_subscription.sync_detailed(client=api, body=body)
check(r.status_code == 201 and isinstance(r.parsed, Subscription), f"create: {r}")
sub = r.parsed
check(sub.category == Category.LINEAR, f"default category {sub.category}")
check(sub.topic == "publicTrade.BTCUSDT", sub.topic)
check(sub.symbol == "BTCUSDT" and sub.is_active, "symbol, is_active")
check(sub.status == SubscriptionStatus.PENDING, f"Bybit unreachable: pending, not {sub.status}")
check(sub.status_message is None and sub.last_event_at is None, "nulls decode to None")
r = create_subscription.sync_detailed(client=api, body=body)
check(r.status_code == 200 and r.parsed.id == sub.id, f"idempotent create: {r}")

# invalid input and a private channel without credentials: 400 with the error body
r = create_subscription.sync_detailed(
    client=api, body=CreateSubscription(channel_type=ChannelType.BALANCE, requesting_service=service)
)
check(r.status_code == 400 and isinstance(r.parsed, ErrorBody), f"balance without credentials: {r}")
check(r.parsed.error == "private_channel_unavailable", r.parsed.error)

# list (filtered) and get
r = list_subscriptions.sync_detailed(client=api, requesting_service=service)
check(r.status_code == 200 and [s.id for s in r.parsed] == [sub.id], f"list: {r}")
r = list_subscriptions.sync_detailed(client=api, channel_type=ChannelType.TRADES, category=Category.LINEAR, is_active=True)
check(sub.id in [s.id for s in r.parsed], "list by channel type, category, is_active")
r = get_subscription.sync_detailed(sub.id, client=api)
check(r.status_code == 200 and r.parsed.id == sub.id and r.parsed.topic == sub.topic, f"get: {r}")
r = get_subscription.sync_detailed(uuid.uuid4(), client=api)
check(r.status_code == 404 and isinstance(r.parsed, ErrorBody), f"get unknown: {r}")

# cancel
r = cancel_subscription.sync_detailed(sub.id, client=api)
check(r.status_code == 200 and isinstance(r.parsed, Subscription), f"cancel: {r}")
check(not r.parsed.is_active and r.parsed.status == SubscriptionStatus.CANCELLED, f"cancelled: {r.parsed}")
r = list_subscriptions.sync_detailed(client=api, requesting_service=service, is_active=True)
check(r.parsed == [], "no active subscription left")
r = cancel_service_subscriptions.sync_detailed(service, client=api)
check(r.status_code == 200 and r.parsed.cancelled == 0, f"cancel by service: {r}")

# balances: nothing recorded yet
r = latest_balances.sync_detailed(client=api, limit=10)
check(r.status_code == 200 and isinstance(r.parsed, Balances), f"balances: {r}")
check(r.parsed.balances == [] and r.parsed.margin is None, "no balances, margin null")
r = balance_history.sync_detailed(client=api, coin="USDT", limit=5)
check(r.status_code == 200 and r.parsed == [], f"history: {r}")

# a wrong key: 401 with the error body
bad = AuthenticatedClient(base_url=base, token="wrong", prefix="", auth_header_name="X-API-Key")
r = list_subscriptions.sync_detailed(client=bad)
check(r.status_code == 401 and isinstance(r.parsed, ErrorBody), f"wrong key: {r}")

print(f"python client: {checks} checks passed")
