// The seed quickstart's example client (`src/websocket/client-example.ts` of the Node browser
// gateway), written again in its image for ws-gateway: connect, subscribe to two symbols, print
// the trades, and after 10 s unsubscribe from one and subscribe to another. It speaks only the
// seed's `action` protocol and reads only the seed's message shapes:
//   {"type":"trade","data":{"symbol","price","volume","timestamp","exchange"},"timestamp"}
//   {"type":"success"|"error"|"pong",...}
// It uses the WebSocket a browser page has (global `WebSocket`; Node 20 needs
// `--experimental-websocket`, Node 22+ has it built in), so it installs nothing.
//
// usage: node --experimental-websocket client-example.mjs <ws-url> <SYM1,SYM2> <NEW_SYM>
//                                      [swap-after-ms=10000] [exit-after-ms=never]
// The URL carries the key as `?api_key=` (a browser cannot set headers).

const [url, pair = 'BTCUSDT,ETHUSDT', replacement = 'SOLUSDT', swapArg, exitArg] =
  process.argv.slice(2);
if (!url) {
  console.error('usage: client-example.mjs <ws-url> <SYM1,SYM2> <NEW_SYM> [swap-after-ms] [exit-after-ms]');
  process.exit(2);
}
if (typeof WebSocket === 'undefined') {
  console.error('no global WebSocket: run with node --experimental-websocket (Node 20) or Node 22+');
  process.exit(2);
}
const symbols = pair.split(',');
const swapAfter = Number(swapArg ?? 10000);
const exitAfter = exitArg === undefined ? undefined : Number(exitArg);

const ws = new WebSocket(url);

function send(message) {
  ws.send(JSON.stringify(message));
}

ws.onopen = () => {
  console.log('Connected to WebSocket Gateway');
  send({ action: 'subscribe', symbols });
  setTimeout(() => {
    const [, dropped] = symbols;
    console.log(`Swapping ${dropped} for ${replacement}`);
    send({ action: 'unsubscribe', symbols: [dropped] });
    send({ action: 'subscribe', symbols: [replacement] });
  }, swapAfter);
  if (exitAfter !== undefined) {
    setTimeout(() => {
      console.log('Closing');
      ws.close();
    }, exitAfter);
  }
};

ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  switch (message.type) {
    case 'trade': {
      const { symbol, price, volume, timestamp, exchange } = message.data;
      // What the seed's page does with a trade: arithmetic and formatting on numbers.
      if (typeof price !== 'number' || typeof volume !== 'number' || typeof timestamp !== 'number') {
        console.log(`Malformed trade: ${event.data}`);
        break;
      }
      console.log(
        `Trade: ${symbol} @ $${price.toFixed(2)} (vol: ${volume}) on ${exchange} at ` +
          new Date(timestamp).toISOString(),
      );
      break;
    }
    case 'success':
      console.log(`Success: ${message.message} ${JSON.stringify(message.data)}`);
      break;
    case 'error':
      console.log(`Error: ${message.message}`);
      break;
    case 'pong':
      console.log('Pong');
      break;
    default:
      console.log(`Unknown message: ${event.data.slice(0, 200)}`);
  }
};

ws.onerror = (event) => {
  console.log(`WebSocket error: ${event.message ?? event.type}`);
};

ws.onclose = (event) => {
  console.log(`Disconnected (${event.code})`);
  process.exit(0);
};
