// Contribute mode in the page: open the chosen model (header first, then only the span's tensors), a WebGPU device
// of this tab's own, the swarm, and a Contributor (src/swarm/contributor.ts) under the memory limit the user set;
// hold the screen Wake Lock while serving; show what is served. Not here: the serving itself (src/swarm/serve.ts).

import { requestFlockDevice, type FlockDevice } from '../gpu/device';
import { openGguf } from '../model/gguf';
import type { LoadProgress } from '../model/source';
import { sourceFor, type ModelSpec } from '../storage/model-source';
import type { NetSettings } from '../storage/settings';
import { Contributor } from '../swarm/contributor';
import { SwarmNet } from '../swarm/swarm-net';
import { hostIdentity } from '../storage/identity-store';
import { swarmOf } from './swarm-panel';
import type { SignalConfig } from '../swarm/transport';
import { formatBytes, formatDuration } from './format';
import { KeepAwake } from './keep-awake';
import { renderSwarm } from './swarm-map';

const WAKE_TEXT = {
  held: 'held: the screen stays on',
  unsupported: 'not offered by this browser: keep the tab visible',
  refused: 'refused: keep the tab visible',
  released: 'released',
} as const;

export class ContributeSession {
  private constructor(
    readonly net: SwarmNet,
    readonly contributor: Contributor,
    private readonly dev: FlockDevice,
    private readonly awake: KeepAwake,
  ) {}

  static async start(spec: ModelSpec, settings: NetSettings, signal: SignalConfig, onProgress: (p: LoadProgress) => void): Promise<ContributeSession> {
    const file = await openGguf(await sourceFor(spec));
    const dev = await requestFlockDevice(navigator.gpu);
    let net: SwarmNet | undefined;
    try {
      const swarm = swarmOf(settings);
      net = await SwarmNet.join(signal, swarm, await hostIdentity(swarm.powBits));
      const contributor = await Contributor.start({ dev, file, net, budgetBytes: settings.memoryMb * 1e6, onProgress });
      const awake = new KeepAwake();
      await awake.start();
      return new ContributeSession(net, contributor, dev, awake);
    } catch (e) {
      net?.stop();
      dev.device.destroy();
      throw e;
    }
  }

  /** Show the stats (as rows and as data attributes for tests) and the swarm picture with this tab marked. */
  render(stats: HTMLElement, map: HTMLElement): string {
    const s = this.contributor.stats();
    stats.dataset.span = `${s.span.start}:${s.span.end}`;
    stats.dataset.peer = s.peerId;
    stats.dataset.sessions = String(s.sessions);
    stats.dataset.clients = s.clients.join(',');
    stats.dataset.tokens = String(s.tokens);
    stats.dataset.weights = s.weights;
    const rows: [string, string][] = [
      ['Serving', `layers ${s.span.start}–${s.span.end - 1} of ${s.nLayers} (${formatBytes(s.weightBytes)} of weights)`],
      ['Weights', s.weights === 'verified' ? 'checked against the pinned manifest' : 'not pinned: not checked'],
      ['Sessions', `${s.sessions} open, ${s.links} peer${s.links === 1 ? '' : 's'} connected`],
      ['Tokens', `${s.tokens} run for others${s.tokensPerSecond > 0 ? ` · ${s.tokensPerSecond.toFixed(0)} tok/s` : ''}`],
      ['Uptime', formatDuration(s.uptimeMs / 1000)],
      ['Wake Lock', WAKE_TEXT[this.awake.state]],
    ];
    stats.replaceChildren(...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      return [dt, dd];
    }));
    renderSwarm(map, { nLayers: s.nLayers, records: this.net.records(this.contributor.modelHash), self: s.peerId });
    return `contributing to "${this.net.swarm}" as ${s.peerId.slice(0, 8)}…`;
  }

  /** Stop contributing; the sessions' clients and the swarm are told first, so nobody waits on this tab. */
  async stop(): Promise<void> {
    this.awake.stop();
    await this.contributor.leave();
    this.net.stop();
    this.dev.device.destroy();
  }

  /** The tab is going away (closed, reloaded, navigated): say goodbye with what time there is, then stop. */
  goodbye(): void {
    this.awake.stop();
    this.contributor.serving.host.stop(); // tells every client at once; the rest may not get to run
    void this.contributor.leave();
  }
}
