// One benchmark round of BullMQ (run by bench/jobs.py --peers with NODE_PATH set).
//   node jobs_bullmq.mjs PORT JOBS CONCURRENCY SINGLE_JOBS
// Same shape as bench/jobs_ours.py: SINGLE_JOBS jobs by single `add` calls with
// CONCURRENCY in flight (into a queue of their own), then bulk-add no-op jobs, drain
// them with one Worker, print one JSON line. Completed jobs are kept like ours (last
// 1,000).
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(process.env.NODE_PATH + '/');
const { Queue, Worker } = require('bullmq');

const [port, jobs, concurrency, singleJobs] = process.argv.slice(2).map(Number);
const connection = { host: '127.0.0.1', port };
const queue = new Queue('bench', { connection });
await queue.waitUntilReady();

const single = new Queue('single', { connection });
await single.waitUntilReady();
const redisClient = await queue.client;
// CPU µs per job of this process (all its threads) and of the redis-server, by phase.
async function redisCpu() {
  const info = await redisClient.info('cpu');
  const field = (name) => Number(info.match(new RegExp(`${name}:([0-9.]+)`))[1]);
  return field('used_cpu_user_main_thread') + field('used_cpu_sys_main_thread');
}
let cpuOurs = process.cpuUsage();
let cpuRedis = 0;
async function lap(count) {
  const used = process.cpuUsage(cpuOurs);
  const redisNow = await redisCpu();
  const spent = [(used.user + used.system) / count, (redisNow - cpuRedis) / count * 1e6];
  cpuOurs = process.cpuUsage();
  cpuRedis = redisNow;
  return spent;
}
let nextSingle = 0;
async function adder(total) {
  while (nextSingle < total) {
    const n = nextSingle++;
    await single.add('noop', { n }, { removeOnComplete: 1000 });
  }
}
// Warm-up, not measured: connections made, scripts loaded, V8 warm (as ours does).
await Promise.all(Array.from({ length: concurrency }, () => adder(1000)));
nextSingle = 0;
await lap(1);
let started = performance.now();
await Promise.all(Array.from({ length: concurrency }, () => adder(singleJobs)));
const singleSeconds = (performance.now() - started) / 1000;
const singleCpu = await lap(singleJobs);
await single.close();

const bulk = Array.from({ length: jobs }, (_, n) => ({
  name: 'noop', data: { n }, opts: { removeOnComplete: 1000 },
}));
started = performance.now();
// Chunks of 1,000 with 4 in flight, as ours does (one addBulk of 100k is slower).
const chunks = [];
for (let i = 0; i < jobs; i += 1000) chunks.push(bulk.slice(i, i + 1000));
let next = 0;
async function lane() {
  while (next < chunks.length) {
    const chunk = chunks[next++];
    await queue.addBulk(chunk);
  }
}
await Promise.all([lane(), lane(), lane(), lane()]);
const enqueueSeconds = (performance.now() - started) / 1000;
const bulkCpu = await lap(jobs);

const waits = [];
let done = 0;
let finish;
const finished = new Promise((resolve) => { finish = resolve; });
started = performance.now();
const worker = new Worker('bench', async (job) => { waits.push(Date.now() - job.timestamp); },
  { connection, concurrency });
worker.on('completed', () => { done += 1; if (done === jobs) finish(); });
await finished;
const drainSeconds = (performance.now() - started) / 1000;
const drainCpu = await lap(jobs);
await worker.close();
await queue.close();

waits.sort((a, b) => a - b);
const pct = (p) => waits[Math.min(waits.length - 1, Math.floor((p / 100) * waits.length))];
console.log(JSON.stringify({
  enqueue_per_s: singleJobs / singleSeconds,
  enqueue_bulk_per_s: jobs / enqueueSeconds,
  drain_per_s: jobs / drainSeconds,
  wait_p50_ms: pct(50),
  wait_p99_ms: pct(99),
  enqueue_cpu_us: singleCpu[0], enqueue_redis_cpu_us: singleCpu[1],
  enqueue_bulk_cpu_us: bulkCpu[0], enqueue_bulk_redis_cpu_us: bulkCpu[1],
  drain_cpu_us: drainCpu[0], drain_redis_cpu_us: drainCpu[1],
}));
