// What every Node participant (a host, a client) does first: WebRTC for Node, and the model file, opened here from a
// path or URL (read with Range requests), or given already open. Not here: joining the swarm (swarm/swarm-net.ts).

import { openGguf, type GgufFile } from '../model/gguf';
import { FileSource, openSource } from '../model/source-file';
import { installNodeWebRtc } from './node-webrtc';

export interface NodeModel {
  file: GgufFile;
  /** close the model file if we opened it (a file passed in open stays the caller's) */
  close(): void;
}

export async function openNodeModel(model: string | GgufFile): Promise<NodeModel> {
  installNodeWebRtc();
  if (typeof model !== 'string') return { file: model, close: () => {} };
  const source = openSource(model);
  const file = await openGguf(source);
  return {
    file,
    close: () => {
      if (source instanceof FileSource) void source.close();
    },
  };
}
