// Where a model's bytes come from, as a ByteSource: an http(s) URL read with Range requests, a small file fetched whole
// (the embedded model: any static host serves it), a File the user picked, or a model in the download cache. The
// engine worker and Contribute mode in the page open models the same way. Not here: downloading (model-cache.ts).

import { InvalidArgumentError, ModelFetchError } from '../model/errors';
import { BlobSource, openWebSource, type ByteSource } from '../model/source';
import { CacheSource, getModel } from './model-cache';

/** Where a model's bytes come from (structured-clone data: it crosses to the engine worker). */
export type ModelSpec =
  | { kind: 'url'; url: string; name: string }
  /** a small file (the embedded model) fetched whole into memory: no Range requests, so any static host works */
  | { kind: 'whole'; url: string; name: string }
  | { kind: 'file'; file: File }
  | { kind: 'cached'; id: string };

export async function sourceFor(spec: ModelSpec): Promise<ByteSource> {
  switch (spec.kind) {
    case 'url':
      return openWebSource(spec.url);
    case 'whole': {
      let res: Response;
      try {
        res = await fetch(spec.url);
      } catch (e) {
        throw new ModelFetchError(`Could not fetch ${spec.url}: ${(e as Error).message}. Check your network.`);
      }
      if (!res.ok) throw new ModelFetchError(`Fetching ${spec.url} failed with HTTP ${res.status} ${res.statusText}.`);
      return new BlobSource(await res.blob(), spec.name);
    }
    case 'file':
      return new BlobSource(spec.file);
    case 'cached': {
      const m = await getModel(spec.id);
      if (!m || !m.complete) throw new InvalidArgumentError('That model is not fully downloaded; finish its download first.');
      return new CacheSource(m);
    }
    default:
      throw new InvalidArgumentError(`unknown model source ${JSON.stringify(spec)}`);
  }
}
