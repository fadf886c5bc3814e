// Placeholder replaced by the benchmark implementation.
export async function runBench(_argv: string[]): Promise<void> {
  throw new Error('not implemented');
}
