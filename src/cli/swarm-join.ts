// What a Node host and a Node client do first: WebRTC for Node, the model file (opened here from a path or URL, or
// given already open), its config and swarm hash, and a fresh peer on the signalling server.

import type { Peer } from 'peerjs';
import { readConfig, type ModelConfig } from '../model/config';
import { openGguf, type GgufFile } from '../model/gguf';
import { FileSource, openSource } from '../model/source-file';
import { SignalError } from '../swarm/errors';
import { modelHashOf } from '../swarm/records';
import { openPeer, type SignalConfig } from '../swarm/transport';
import { installNodeWebRtc } from './node-webrtc';

export interface Joined {
  file: GgufFile;
  config: ModelConfig;
  modelHash: string;
  peer: Peer;
  /** close the model file if we opened it (a file passed in open stays the caller's) */
  closeSource(): void;
}

export async function joinSwarm(model: string | GgufFile, signal: SignalConfig): Promise<Joined> {
  installNodeWebRtc();
  const source = typeof model === 'string' ? openSource(model) : undefined;
  const file = source ? await openGguf(source) : (model as GgufFile);
  const config = readConfig(file);
  const modelHash = await modelHashOf(file);
  const opened = await openPeer(signal, undefined);
  if (opened.kind !== 'open') throw new SignalError('The signalling server refused a fresh peer id.');
  return {
    file, config, modelHash, peer: opened.peer,
    closeSource: () => {
      if (source instanceof FileSource) void source.close();
    },
  };
}
