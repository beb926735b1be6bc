// WAMP load for bench/wamp.py: raw WebSocket clients (the `ws` package) speaking
// wamp.2.json by hand, anonymous, so the same load runs against any WAMP router.
//
//   node wamp_load.mjs fanout URL SUBSCRIBERS RATE SECONDS
//     1 publisher -> SUBSCRIBERS subscribers of one topic. RATE: deliveries/s to aim
//     for (0: as fast as the router takes them). Prints one JSON line: deliveries/s and
//     publish->deliver latency percentiles (ms, one clock: all clients are this process).
//   node wamp_load.mjs idle URL SESSIONS
//     opens SESSIONS sessions (each subscribed to one topic), prints {"ready": n}, and
//     holds them until stdin closes.
import WebSocket from "ws";

const TOPIC = "bench.fanout";
const HELLO = JSON.stringify([1, "installsure", {
  roles: { subscriber: {}, publisher: {} }, authmethods: ["anonymous"],
}]);

function session(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ["wamp.2.json"], { perMessageDeflate: false });
    ws.once("open", () => ws.send(HELLO));
    ws.once("error", reject);
    ws.once("message", (data) => {
      const msg = JSON.parse(data);
      if (msg[0] === 2) resolve(ws);
      else reject(new Error(`not welcomed: ${data}`));
    });
  });
}

function subscribe(ws) {
  return new Promise((resolve, reject) => {
    ws.send(JSON.stringify([32, 1, {}, TOPIC]));
    ws.once("message", (data) => {
      const msg = JSON.parse(data);
      if (msg[0] === 33) resolve(ws);
      else reject(new Error(`not subscribed: ${data}`));
    });
  });
}

async function batches(count, size, make) {
  const made = [];
  for (let i = 0; i < count; i += size) {
    const n = Math.min(size, count - i);
    made.push(...await Promise.all(Array.from({ length: n }, make)));
  }
  return made;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function fanout(url, subscribers, rate, seconds) {
  const subs = await batches(subscribers, 50, async () => subscribe(await session(url)));
  const publisher = await session(url);
  let delivered = 0;
  let receivedTotal = 0;
  let measuring = false;
  const latencies = [];
  for (const ws of subs) {
    ws.on("message", (data) => {
      const msg = JSON.parse(data);
      if (msg[0] !== 36) return;
      receivedTotal += 1;
      if (measuring) {
        delivered += 1;
        latencies.push(performance.now() - msg[4][0]);
      }
    });
  }
  let published = 0;
  let request = 1;
  const publish = () => {
    publisher.send(JSON.stringify([16, request++, {}, TOPIC, [performance.now()]]));
    published += 1;
  };
  const warmup = 2.0;
  const started = performance.now();
  let measureFrom = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      const elapsed = (now - started) / 1000;
      if (!measuring && elapsed >= warmup) {
        measuring = true;
        measureFrom = now;
      }
      if (elapsed >= warmup + seconds) return resolve();
      if (rate > 0) {
        const due = Math.floor(elapsed * rate / subscribers);
        while (published < due) publish();
      } else {
        // As fast as the router takes them, with at most ~200 publications in flight
        // (so what is measured is the router, not a queue in front of it).
        const inFlight = published - receivedTotal / subscribers;
        let n = 0;
        while (n < 50 && publisher.bufferedAmount < 65536 && inFlight + n < 200) {
          publish();
          n += 1;
        }
      }
      setImmediate(tick);
    };
    tick();
  });
  const elapsed = (performance.now() - measureFrom) / 1000;
  measuring = false;
  latencies.sort((a, b) => a - b);
  console.log(JSON.stringify({
    deliveries: delivered, seconds: elapsed, deliveriesPerSecond: delivered / elapsed,
    p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99),
    max: latencies.length ? latencies[latencies.length - 1] : null,
  }));
  for (const ws of [...subs, publisher]) ws.terminate();
}

async function idle(url, sessions) {
  const held = await batches(sessions, 100, async () => subscribe(await session(url)));
  console.log(JSON.stringify({ ready: held.length }));
  process.stdin.resume();
  process.stdin.on("end", () => { for (const ws of held) ws.terminate(); process.exit(0); });
}

const [mode, url, ...rest] = process.argv.slice(2);
const run = mode === "fanout"
  ? fanout(url, Number(rest[0]), Number(rest[1]), Number(rest[2]))
  : idle(url, Number(rest[0]));
run.catch((error) => { console.log(JSON.stringify({ error: String(error) })); process.exit(1); });
