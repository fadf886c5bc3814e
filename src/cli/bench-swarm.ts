// `npm run bench:swarm`: per-token decode latency of a swarm on loopback (1, 2, 3 and 5 stages; a local PeerServer,
// hosts and client in this process, real WebRTC through node-datachannel, one Dawn device) against the local run of
// the same model, the milliseconds each hop adds, and the bytes on the wire per decoded token with f32 and f16
// frames, every layer on the hosts; and the default client, which runs its own first and last layers (own-layers.ts).
// Then what checked hops cost (src/swarm/hop-check.ts): 3 stages with two hosts per span (each hop has a
// witness), checks off against the default rate (with the end-of-reply check). Prints tables and JSON (and writes the
// JSON with --out). Medians of --runs runs; numbers from a shared machine vary. With --churn: what hosts dying and
// coming back cost a client instead (bench-churn.ts). Detection per check rate, with a lying host: scripts/bench-checks.ts.
// Not a test: it asserts nothing.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { drain } from '../engine/generate';
import { LocalModel } from '../engine/local-model';
import { splitLayers } from '../engine/spans';
import { openGguf } from '../model/gguf';
import { FileSource } from '../model/source-file';
import { publicSwarm } from '../swarm/swarm-config';
import { parseSignalUrl } from '../swarm/transport';
import type { Dtype } from '../swarm/protocol';
import { DEFAULT_CHECK_POLICY, type CheckPolicy } from '../swarm/hop-check';
import { benchChurn, churnTable } from './bench-churn';
import { median, swarmPerToken } from './bench-runs';
import { nodeDevice } from './dawn';
import { DEFAULT_MODEL } from './default-model';
import { launchHost, type LaunchedHost } from './host';
import { cleanupNodeWebRtc } from './node-webrtc';
import { startSignalServer } from './signal';
import { launchClient } from './swarm-generate';
import { DEFAULT_OWN_LAYERS, type OwnLayers } from '../swarm/own-layers';


/** What checks cost on one route: decode ms and wire bytes per token, checks run per token. */
interface CheckRow {
  checks: 'off' | 'default';
  rate: number;
  /** hops on the route (the client runs its own first and last layers: the hosts' spans are cut to the layers between) */
  hops: number;
  decodeMsPerToken: number;
  wireBytesPerToken: number;
  checksPerToken: number;
}

interface Row {
  stages: number;
  dtype: Dtype | 'local';
  /** layers the client ran itself, first and last ([0, 0]: none, every layer on the hosts) */
  own: [number, number];
  /** hops on the route */
  hops: number;
  decodeMsPerToken: number;
  addedMsPerHop: number;
  /** median heartbeat round trip over the route's links: the network's own share of a hop */
  pingRttMs: number;
  wireBytesPerToken: number;
}

export async function runBenchSwarm(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', default: DEFAULT_MODEL },
      tokens: { type: 'string', default: '48' },
      runs: { type: 'string', default: '3' },
      out: { type: 'string' },
      churn: { type: 'boolean', default: false },
      seconds: { type: 'string' },
      'kill-every': { type: 'string' },
    },
  });
  if (values.churn) {
    // the churn mode (bench-churn.ts): hosts as processes, killed and replaced, a client generating throughout
    const dev = await nodeDevice();
    const rows = await benchChurn(dev, values.model!, argv);
    const json = { model: values.model, device: dev.adapterName, mode: 'churn', rows };
    process.stdout.write(`${churnTable(rows)}\n${JSON.stringify(json)}\n`);
    if (values.out) {
      mkdirSync(dirname(values.out), { recursive: true });
      writeFileSync(values.out, JSON.stringify(json, null, 1) + '\n');
    }
    return;
  }
  const tokens = Number(values.tokens);
  const runs = Number(values.runs);
  const dev = await nodeDevice();
  const source = new FileSource(values.model!);
  const file = await openGguf(source);
  const gen = { inputIds: [1], maxTokens: tokens, temperature: 0, ignoreEos: true };
  const msPerToken = (decodeMs: number): number => decodeMs / (tokens - 1);

  // the local run: one Head and one Stage on this device, one submission per token
  const local = await LocalModel.load(dev, source, { maxContext: 256 });
  await drain(local.generate({ ...gen, maxTokens: 8 })); // compile pipelines
  const localRuns: number[] = [];
  for (let i = 0; i < runs; i++) localRuns.push(msPerToken((await drain(local.generate(gen))).timings.decodeMs));
  const localMs = median(localRuns);
  const nLayers = local.config.nLayers;
  local.destroy();

  const rows: Row[] = [{ stages: 1, dtype: 'local', own: [nLayers, 0], hops: 0, decodeMsPerToken: localMs, addedMsPerHop: 0, pingRttMs: 0, wireBytesPerToken: 0 }];
  const server = await startSignalServer(0);
  const signal = parseSignalUrl(server.url);
  for (const k of [1, 2, 3, 5].filter((x) => x <= nLayers)) {
    const swarm = publicSwarm(`bench-${k}-${Date.now()}`);
    const hosts: LaunchedHost[] = [];
    for (const span of splitLayers(nLayers, k)) {
      hosts.push(await launchHost({ dev, model: file, swarm, signal, layers: span, maxContext: 256, announceMs: 500 }));
    }
    // every layer on the hosts (the hop's own cost), f32 and f16 frames; then the default client, which runs its
    // first and last layers itself (what that costs, and the hops left)
    const none: OwnLayers = { first: 0, last: 0 };
    const configs: { dtype: Dtype; own: OwnLayers }[] = [
      { dtype: 'f32', own: none },
      { dtype: 'f16', own: none },
      ...(nLayers > 2 ? [{ dtype: 'f32' as const, own: DEFAULT_OWN_LAYERS }] : []),
    ];
    for (const { dtype, own } of configs) {
      const c = await launchClient({ dev, model: file, swarm, signal, announceMs: 500, own, swarmOptions: { dtype, maxContext: 256 }, waitForRouteMs: 20_000 });
      const { ms: m, bytes } = await swarmPerToken(c.model, gen, runs);
      const rtts: number[] = [];
      for (const hop of c.model.route) {
        const rtt = (await c.discovery.connect(hop.peer)).rttMs;
        if (Number.isFinite(rtt)) rtts.push(rtt);
      }
      const hops = c.model.route.length;
      rows.push({ stages: k, dtype, own: [own.first, own.last], hops, decodeMsPerToken: m, addedMsPerHop: (m - localMs) / hops, pingRttMs: rtts.length ? median(rtts) : NaN, wireBytesPerToken: bytes });
      c.stop();
    }
    for (const h of hosts) h.stop();
  }

  // checks: 3 stages, two hosts per span, so every hop has a witness; checks off against the default policy
  const checkRows: CheckRow[] = [];
  {
    const swarm = publicSwarm(`bench-checks-${Date.now()}`);
    const hosts: LaunchedHost[] = [];
    for (const span of splitLayers(nLayers, Math.min(3, nLayers))) {
      for (let i = 0; i < 2; i++) hosts.push(await launchHost({ dev, model: file, swarm, signal, layers: span, maxContext: 256, announceMs: 500 }));
    }
    const settings: [CheckRow['checks'], CheckPolicy][] = [['off', { ...DEFAULT_CHECK_POLICY, rate: 0, atEnd: false }], ['default', DEFAULT_CHECK_POLICY]];
    for (const [name, checks] of settings) {
      const c = await launchClient({ dev, model: file, swarm, signal, announceMs: 500, swarmOptions: { maxContext: 256, checks }, waitForRouteMs: 20_000 });
      await c.discovery.waitFor((r) => r.filter((x) => x.modelHash === c.modelHash).length >= hosts.length, 20_000);
      const t = await swarmPerToken(c.model, gen, runs);
      checkRows.push({ checks: name, rate: checks.rate, hops: c.model.route.length, decodeMsPerToken: t.ms, wireBytesPerToken: t.bytes, checksPerToken: t.checks });
      c.stop();
    }
    for (const h of hosts) h.stop();
  }
  await server.close();
  await source.close();

  const table = [
    '| host stages | frames | own layers (first, last) | hops | decode ms/token | added ms per hop | ping RTT ms | wire bytes/token |',
    '|---:|---|---|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.dtype === 'local' ? '– (local)' : r.stages} | ${r.dtype} | ${r.dtype === 'local' ? 'all' : r.own.join(', ')} | ${r.hops} | ${r.decodeMsPerToken.toFixed(2)} | ${r.dtype === 'local' ? '–' : r.addedMsPerHop.toFixed(2)} | ${r.dtype === 'local' ? '–' : r.pingRttMs.toFixed(3)} | ${r.wireBytesPerToken.toFixed(0)} |`),
  ].join('\n');
  const off = checkRows.find((r) => r.checks === 'off')?.decodeMsPerToken ?? NaN;
  const checksTable = [
    '| checks (3 stages, 2 hosts per span, f32) | hops | decode ms/token | added ms/token | wire bytes/token | checks/token |',
    '|---|---:|---:|---:|---:|---:|',
    ...checkRows.map((r) => `| ${r.checks === 'off' ? 'off' : `default (rate ${r.rate}, end of reply)`} | ${r.hops} | ${r.decodeMsPerToken.toFixed(2)} | ${r.checks === 'off' ? '–' : (r.decodeMsPerToken - off).toFixed(2)} | ${r.wireBytesPerToken.toFixed(0)} | ${r.checksPerToken.toFixed(2)} |`),
  ].join('\n');
  const json = { model: values.model, device: dev.adapterName, tokens, runs, rows, checks: checkRows };
  process.stdout.write(`${table}\n\n${checksTable}\n${JSON.stringify(json)}\n`);
  if (values.out) {
    mkdirSync(dirname(values.out), { recursive: true });
    writeFileSync(values.out, JSON.stringify(json, null, 1) + '\n');
  }
  try {
    cleanupNodeWebRtc();
  } catch {
    // libdatachannel may time out while channels close; the process exits next anyway
  }
}

// Run directly (`node --import tsx src/cli/bench-swarm.ts`), as the npm script does.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\0')) {
  runBenchSwarm(process.argv.slice(2)).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`bench-swarm: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}\n`);
      process.exit(1);
    },
  );
}
