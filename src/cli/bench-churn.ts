// `npm run bench:swarm -- --churn`: what churn costs a swarm client. Hosts are `flock host` processes (churn.ts), two
// per span of the model (two spans), one killed in turn (SIGKILL: no goodbye) every 30 s, 10 s and 5 s with a
// replacement 1 s later; a client in this process generates greedy sequences back to back for --seconds at each
// rate. Reports tokens/s, re-routes and their time (failure to caught up: p50, p95, max), and any generation that
// ended in NoRouteError, as a table and JSON. Not a test: it asserts nothing; timings vary on shared machines.

import { parseArgs } from 'node:util';
import { drain, generateTokens } from '../engine/generate';
import { FlockError } from '../model/errors';
import { NoRouteError } from '../swarm/errors';
import { parseSignalUrl } from '../swarm/transport';
import { publicSwarm } from '../swarm/swarm-config';
import { Churn } from './churn';
import type { FlockDevice } from '../gpu/device';
import { startSignalServer } from './signal';
import { launchClient } from './swarm-generate';

export interface ChurnRow {
  killEveryS: number;
  seconds: number;
  tokens: number;
  tokensPerSecond: number;
  kills: number;
  reroutes: number;
  rerouteMs: { p50: number; p95: number; max: number } | null;
  /** generations that ended in NoRouteError */
  noRoute: number;
}

function quantiles(xs: number[]): ChurnRow['rerouteMs'] {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { p50: at(0.5), p95: at(0.95), max: s[s.length - 1] };
}

export async function benchChurn(dev: FlockDevice, model: string, argv: string[]): Promise<ChurnRow[]> {
  const { values } = parseArgs({
    args: argv,
    strict: false,
    options: { seconds: { type: 'string', default: '60' }, 'kill-every': { type: 'string', default: '30,10,5' }, tokens: { type: 'string', default: '256' } },
  });
  const seconds = Number(values.seconds);
  const rates = String(values['kill-every']).split(',').map(Number);
  const tokens = Number(values.tokens);
  if (!(seconds > 0) || rates.some((r) => !(r > 0)) || !(tokens > 1)) throw new FlockError('bench churn: --seconds, --kill-every (comma-separated seconds) and --tokens must be positive');
  const server = await startSignalServer(0);
  const rows: ChurnRow[] = [];
  try {
    for (const rate of rates) {
      const swarm = publicSwarm(`bench-churn-${rate}-${Date.now()}`);
      const churn = new Churn({
        model, swarm: swarm.name, powBits: swarm.powBits, signal: server.url, spans: [{ start: 0, end: 3 }, { start: 3, end: 5 }], perSpan: 2,
        killEveryMs: rate * 1000, replaceAfterMs: 1_000, how: 'SIGKILL', announceMs: 500, maxContext: 512,
      });
      await churn.start();
      const c = await launchClient({
        dev, model, swarm, signal: parseSignalUrl(server.url), announceMs: 500,
        swarmOptions: { maxContext: 512 }, waitForRouteMs: 30_000,
      });
      churn.run();
      const t0 = performance.now();
      let done = 0;
      let noRoute = 0;
      const reroutes: number[] = [];
      while (performance.now() - t0 < seconds * 1000) {
        try {
          const r = await drain(generateTokens(c.model, { inputIds: [1], maxTokens: tokens, temperature: 0, ignoreEos: true }));
          done += r.outputIds.length;
        } catch (e) {
          if (!(e instanceof NoRouteError)) throw e;
          noRoute++;
          done += Math.max(0, e.ids.length - 1);
        }
        reroutes.push(...c.model.reroutes.map((x) => x.ms));
      }
      const elapsed = (performance.now() - t0) / 1000;
      const kills = churn.events.filter((e) => e.kind === 'kill').length;
      await churn.stop();
      c.stop();
      rows.push({ killEveryS: rate, seconds: elapsed, tokens: done, tokensPerSecond: done / elapsed, kills, reroutes: reroutes.length, rerouteMs: quantiles(reroutes), noRoute });
    }
  } finally {
    await server.close();
  }
  return rows;
}

export function churnTable(rows: readonly ChurnRow[]): string {
  const ms = (x: number | undefined) => (x === undefined ? '–' : x.toFixed(0));
  return [
    '| one host killed every | tokens/s | kills | re-routes | re-route ms p50 / p95 / max | NoRouteError |',
    '|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.killEveryS} s | ${r.tokensPerSecond.toFixed(1)} | ${r.kills} | ${r.reroutes} | ${ms(r.rerouteMs?.p50)} / ${ms(r.rerouteMs?.p95)} / ${ms(r.rerouteMs?.max)} | ${r.noRoute} |`),
  ].join('\n');
}
