// Uses the client @hey-api/openapi-ts generated from the gateway's /openapi.json (in ./client),
// unchanged, against a running gateway (no broker, Bybit unreachable, empty database; see
// run.sh). Type-checked with tsc (strict), then run with node: node out/client_test.js BASE KEY
import {
  balanceHistory,
  cancelServiceSubscriptions,
  cancelSubscription,
  createSubscription,
  getSubscription,
  health,
  latestBalances,
  listSubscriptions,
  ready,
} from './client';
import { client } from './client/client.gen';
import type {
  Balances,
  Category,
  ChannelType,
  CreateSubscription,
  ErrorBody,
  Health,
  Subscription,
  SubscriptionStatus,
} from './client';

declare const process: { argv: string[]; exit(code: number): never };

const [base, key] = process.argv.slice(2);
let checks = 0;
function check(cond: boolean, what: string): void {
  if (!cond) {
    throw new Error(`check failed: ${what}`);
  }
  checks += 1;
}

async function main(): Promise<void> {
  client.setConfig({ baseUrl: base, auth: () => key });
  const service = `contract-ts-${Math.random().toString(16).slice(2, 10)}`;

  // /health and /ready (no key)
  const h = await health();
  check(h.response.status === 200 || h.response.status === 503, `health status ${h.response.status}`);
  const body: Health | undefined = h.data ?? (h.error as Health | undefined);
  check(body !== undefined, 'health body');
  const hb = body as Health;
  check(hb.status === 'degraded' || hb.status === 'unhealthy', `health ${hb.status}`);
  check(hb.last_heartbeat_at === null, 'no pong yet: last_heartbeat_at is null');
  check(hb.components.database === 'up' && hb.components.rabbitmq === 'disabled', 'components');
  for (const c of hb.connections) {
    const err: string | null | undefined = c.last_error;
    check(err === null || typeof err === 'string', 'last_error');
  }
  const r = await ready();
  const rb = r.data ?? r.error;
  check(rb !== undefined && rb.ready === (r.response.status === 200), 'ready');

  // create (201), the same again (200, the same one)
  const req: CreateSubscription = { channel_type: 'trades', symbol: 'BTCUSDT', requesting_service: service };
  const created = await createSubscription({ body: req });
  check(created.response.status === 201 && created.data !== undefined, `create ${created.response.status}`);
  const sub: Subscription = created.data as Subscription;
  const category: Category | null | undefined = sub.category;
  check(category === 'linear', `default category ${category}`);
  check(sub.topic === 'publicTrade.BTCUSDT' && sub.symbol === 'BTCUSDT' && sub.is_active, 'topic, symbol');
  const pending: SubscriptionStatus = 'pending';
  check(sub.status === pending, `Bybit unreachable: pending, not ${sub.status}`);
  check(sub.status_message === null && sub.last_event_at === null, 'nulls are null');
  const again = await createSubscription({ body: req });
  check(again.response.status === 200 && again.data?.id === sub.id, 'idempotent create');

  // a private channel without credentials: 400 with the error body
  const balance: ChannelType = 'balance';
  const refused = await createSubscription({ body: { channel_type: balance, requesting_service: service } });
  const refusal: ErrorBody | undefined = refused.error;
  check(refused.response.status === 400 && refusal?.error === 'private_channel_unavailable', 'balance refused');

  // list (filtered) and get
  const listed = await listSubscriptions({ query: { requesting_service: service } });
  check(listed.response.status === 200 && listed.data?.length === 1 && listed.data[0].id === sub.id, 'list');
  const filtered = await listSubscriptions({ query: { channel_type: 'trades', category: 'linear', is_active: true } });
  check((filtered.data ?? []).some((s) => s.id === sub.id), 'list by channel type, category, is_active');
  const got = await getSubscription({ path: { id: sub.id } });
  check(got.response.status === 200 && got.data?.topic === sub.topic, 'get');
  const missing = await getSubscription({ path: { id: '00000000-0000-4000-8000-000000000000' } });
  check(missing.response.status === 404 && missing.error?.error === 'not_found', 'get unknown: 404');

  // cancel
  const cancelled = await cancelSubscription({ path: { id: sub.id } });
  check(cancelled.response.status === 200 && cancelled.data?.is_active === false, 'cancel');
  check(cancelled.data?.status === 'cancelled', `cancelled status ${cancelled.data?.status}`);
  const active = await listSubscriptions({ query: { requesting_service: service, is_active: true } });
  check(active.data?.length === 0, 'no active subscription left');
  const byService = await cancelServiceSubscriptions({ path: { service_name: service } });
  check(byService.response.status === 200 && byService.data?.cancelled === 0, 'cancel by service');

  // balances: nothing recorded yet
  const latest = await latestBalances({ query: { limit: 10 } });
  const balances: Balances | undefined = latest.data;
  check(latest.response.status === 200 && balances !== undefined, 'balances');
  check(balances!.balances.length === 0 && balances!.margin === null, 'no balances, margin null');
  const history = await balanceHistory({ query: { coin: 'USDT', limit: 5 } });
  check(history.response.status === 200 && history.data?.length === 0, 'history');

  // a wrong key: 401 with the error body
  const wrong = await listSubscriptions({ auth: 'wrong' });
  check(wrong.response.status === 401 && wrong.error?.error === 'unauthorized', 'wrong key: 401');

  console.log(`typescript client: ${checks} checks passed`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
