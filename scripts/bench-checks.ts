// What checked hops cost and what they catch, per check rate (src/swarm/hop-check.ts), on loopback: a local
// PeerServer, hosts and clients in this process, real WebRTC, one Dawn device. stories260K split 0:2 / 2:4 / 4:5 with
// two honest hosts per span; clients run their own first and last layers (the default), so the route is [1, 2) on a
// host of 0:2 and [2, 4), and every hop has a witness.
//  - cost: greedy replies of --tokens tokens through an honest swarm, checks off (rate 0, no end-of-reply check) and
//    at each rate (with the end-of-reply check), and handing out only checked tokens (checkedOnly: every step
//    checked before its token): decode ms per token, bytes on the wire per token, checks per token; medians of --runs
//    replies per setting, one client per setting;
//  - detection: a host on [2, 4) that lies on every step it guesses is unchecked (never its first forward, never a
//    forward of several positions: it scales layer 3's output by 1.05 on single decode steps after the first;
//    tests/swarm/lying-host.ts), put on the route (the client's directory says the honest hosts of [2, 4) are far
//    away), --runs replies per rate with the end-of-reply check off (and once with only that check), a new client each
//    (its bans are its own): how often it was caught before the reply ended, how many tokens had been handed out
//    when it was, and how many of them were withdrawn.
// Prints two tables and JSON (--out writes the JSON). Not a test: it asserts nothing; numbers from a shared machine vary.
// Usage: npm run bench:checks -- [--runs 10] [--tokens 32] [--rates 0,0.05,0.1,0.25,1] [--out FILE]

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { median, swarmPerToken } from '../src/cli/bench-runs';
import { nodeDevice } from '../src/cli/dawn';
import { launchHost, type LaunchedHost } from '../src/cli/host';
import { installNodeWebRtc } from '../src/cli/node-webrtc';
import { startSignalServer } from '../src/cli/signal';
import { generateTokens } from '../src/engine/generate';
import type { FlockDevice } from '../src/gpu/device';
import { openGguf, type GgufFile } from '../src/model/gguf';
import { FileSource } from '../src/model/source-file';
import { DEFAULT_CHECK_POLICY } from '../src/swarm/hop-check';
import { Identity } from '../src/swarm/identity';
import { openSwarmClient } from '../src/swarm/open-client';
import { publicSwarm, type SwarmConfig } from '../src/swarm/swarm-config';
import type { Directory, SwarmModel } from '../src/swarm/swarm-model';
import { SwarmNet } from '../src/swarm/swarm-net';
import { parseSignalUrl, type SignalConfig } from '../src/swarm/transport';
import { startLyingHost } from '../tests/swarm/lying-host';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'public/models/stories260K.gguf' },
    runs: { type: 'string', default: '10' },
    tokens: { type: 'string', default: '32' },
    rates: { type: 'string', default: '0,0.05,0.1,0.25,1' },
    out: { type: 'string' },
  },
});
const RUNS = Number(values.runs);
const TOKENS = Number(values.tokens);
const RATES = values.rates!.split(',').map(Number);
const SPANS = [{ start: 0, end: 2 }, { start: 2, end: 4 }, { start: 4, end: 5 }];
const LIAR_SPAN = SPANS[1];
/** the tests' proof of work (tests/swarm/harness.ts TEST_POW_BITS): a new client per run costs milliseconds */
const POW_BITS = 8;
const ANNOUNCE_MS = 300;

const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

interface Client {
  model: SwarmModel;
  stop(): void;
}

/**
 * A client with a fresh identity, once it sees `hosts` hosts; `far` hosts look 500 ms away to its routing (so the
 * route avoids them).
 */
async function client(dev: FlockDevice, file: GgufFile, signal: SignalConfig, swarm: SwarmConfig, rate: number, atEnd: boolean, hosts: number, far: readonly string[] = []): Promise<Client> {
  const net = await SwarmNet.join(signal, swarm, await Identity.generate({ powBits: POW_BITS }), { announceMs: ANNOUNCE_MS });
  const d = net.discovery;
  const directory: Directory = {
    recordsFor: (h) => d.recordsFor(h),
    rttMs: () => {
      const m = new Map(d.rttMs());
      for (const id of far) m.set(id, 500);
      return m;
    },
    connect: (p, l) => d.connect(p, l),
    probe: (p) => d.probe(p),
  };
  const model = await openSwarmClient({ dev, file, directory, swarm: { maxContext: 256, checks: { ...DEFAULT_CHECK_POLICY, rate, atEnd } } });
  await d.waitFor(() => net.records(model.modelHash).length >= hosts, 20_000);
  return {
    model,
    stop: () => {
      net.stop();
      model.destroy();
    },
  };
}

async function main(): Promise<void> {
  installNodeWebRtc();
  const dev = await nodeDevice();
  const source = new FileSource(values.model!);
  const file = await openGguf(source);
  const server = await startSignalServer(0);
  const signal = parseSignalUrl(server.url);
  const swarm = publicSwarm(`bench-checks-${Date.now()}`, POW_BITS);
  const hosts: LaunchedHost[] = [];
  for (const span of SPANS) {
    for (let i = 0; i < 2; i++) hosts.push(await launchHost({ dev, model: file, swarm, signal, layers: span, maxContext: 256, announceMs: ANNOUNCE_MS }));
  }
  const gen0 = { inputIds: [1], maxTokens: TOKENS, temperature: 0, ignoreEos: true };

  // cost: an honest swarm, each rate against checks off
  const cost: { rate: number | 'off' | 'checked only'; msPerToken: number; bytesPerToken: number; checksPerToken: number }[] = [];
  for (const rate of ['off' as const, ...RATES.filter((r) => r > 0), 'checked only' as const]) {
    const r0 = rate === 'off' ? 0 : rate === 'checked only' ? DEFAULT_CHECK_POLICY.rate : rate;
    const c = await client(dev, file, signal, swarm, r0, rate !== 'off', hosts.length);
    const gen = { ...gen0, checkedOnly: rate === 'checked only' };
    const t = await swarmPerToken(c.model, gen, RUNS);
    cost.push({ rate, msPerToken: t.ms, bytesPerToken: t.bytes, checksPerToken: t.checks });
    c.stop();
    process.stderr.write(`cost ${rate}: ${t.ms.toFixed(2)} ms/token\n`);
  }

  // detection: a liar of type (d) on the route
  const liar = await startLyingHost({ dev, file, signal, config: swarm, link: {} }, LIAR_SPAN, { kind: 'unchecked', lie: { kind: 'scale', layer: 3, factor: 1.05 } });
  const far = hosts.filter((h) => h.span.start === LIAR_SPAN.start && h.span.end === LIAR_SPAN.end).map((h) => h.peer.id);
  const detection: { rate: number; atEnd: boolean; runs: number; onRoute: number; caught: number; shownAtCatch: number; withdrawn: number }[] = [];
  for (const [rate, atEnd] of [...RATES.map((r) => [r, false] as const), [0, true] as const]) {
    const row = { rate, atEnd, runs: RUNS, onRoute: 0, caught: 0, shownAtCatch: NaN, withdrawn: NaN };
    const shownAtCatch: number[] = [];
    const withdrawn: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const c = await client(dev, file, signal, swarm, rate, atEnd, hosts.length + 1, far);
      const it = generateTokens(c.model, gen0);
      let handedOut = 0;
      let caughtAt: number | undefined;
      let gone = 0;
      let onRoute = false;
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        onRoute ||= c.model.route.some((h) => h.peer === liar.id);
        const token = r.value.kind === 'token';
        if (r.value.kind === 'token') handedOut++;
        else gone += r.value.withdrawn.length;
        // tokens handed out when the catch came: it happened before this event (a token event after a catch that
        // went back before anything wrong was handed out, or the rollback event that withdraws them)
        if (caughtAt === undefined && c.model.verification.banned.includes(liar.id)) caughtAt = handedOut - (token ? 1 : 0);
      }
      if (onRoute || caughtAt !== undefined) row.onRoute++;
      if (caughtAt !== undefined) {
        row.caught++;
        shownAtCatch.push(caughtAt);
        withdrawn.push(gone);
      }
      c.stop();
    }
    row.shownAtCatch = mean(shownAtCatch);
    row.withdrawn = mean(withdrawn);
    detection.push(row);
    process.stderr.write(`detection ${rate}${atEnd ? ' + end' : ''}: caught ${row.caught}/${row.onRoute}\n`);
  }
  const off = cost[0].msPerToken;
  const table1 = [
    `| check rate | decode ms/token | added ms/token | wire bytes/token | checks/token |`,
    '|---:|---:|---:|---:|---:|',
    ...cost.map((r) => `| ${typeof r.rate === 'number' ? `${r.rate} + end` : r.rate} | ${r.msPerToken.toFixed(2)} | ${r.rate === 'off' ? '–' : (r.msPerToken - off).toFixed(2)} | ${r.bytesPerToken.toFixed(0)} | ${r.checksPerToken.toFixed(2)} |`),
  ].join('\n');
  const table2 = [
    `| check rate | liar on the route | caught before the reply was final | tokens handed out when caught (mean) | tokens withdrawn (mean) |`,
    '|---:|---:|---:|---:|---:|',
    ...detection.map((r) => `| ${r.rate}${r.atEnd ? ' + end' : ''} | ${r.onRoute}/${r.runs} | ${r.caught}/${r.onRoute} | ${r.shownAtCatch.toFixed(1)} | ${r.withdrawn.toFixed(1)} |`),
  ].join('\n');
  const json = { model: values.model, device: dev.adapterName, tokens: TOKENS, runs: RUNS, cost, detection };
  process.stdout.write(`${table1}\n\n${table2}\n${JSON.stringify(json)}\n`);
  if (values.out) {
    mkdirSync(dirname(values.out), { recursive: true });
    writeFileSync(values.out, JSON.stringify(json, null, 1) + '\n');
  }
  // the process exits now, peers and all (tearing them down one by one can throw inside PeerJS mid-negotiation)
  await source.close();
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench-checks: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}\n`);
    process.exit(1);
  },
);
