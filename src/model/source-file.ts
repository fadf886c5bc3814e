// A ByteSource over a local file, for Node (the CLI and tests). Browser code never imports this file.

import { open, type FileHandle } from 'node:fs/promises';
import { ModelFetchError } from './errors';
import { HttpSource, type ByteSource } from './source';

export class FileSource implements ByteSource {
  bytesFetched = 0;
  private handle: Promise<FileHandle> | undefined;
  constructor(readonly name: string) {}

  private fh(): Promise<FileHandle> {
    this.handle ??= open(this.name, 'r').catch((e: NodeJS.ErrnoException) => {
      const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
      throw new ModelFetchError(`Cannot open model file ${this.name}: ${why} (${e.code ?? 'error'}). Check the path.`);
    });
    return this.handle;
  }
  async size(): Promise<number> {
    return (await (await this.fh()).stat()).size;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    const { bytesRead } = await (await this.fh()).read(buf, 0, length, offset);
    this.bytesFetched += bytesRead;
    return bytesRead === length ? buf : buf.subarray(0, bytesRead);
  }
  async close(): Promise<void> {
    if (this.handle) await (await this.handle).close();
    this.handle = undefined;
  }
}

/** A path or an http(s) URL. */
export function openSource(spec: string): ByteSource {
  return /^https?:\/\//i.test(spec) ? new HttpSource(spec) : new FileSource(spec);
}
