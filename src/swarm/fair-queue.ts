// One task at a time, shared fairly between keys: tasks of one key run in the order they came, and keys take turns
// (round-robin), so a peer that queues many forwards delays its own, not everyone else's. A host runs every forward
// on its GPU through one of these, keyed by the client's key. Not here: what the tasks do.

export class FairQueue {
  private readonly queues = new Map<string, (() => Promise<void>)[]>();
  /** keys with tasks, in turn order */
  private readonly turn: string[] = [];
  private running = false;

  /** Tasks waiting, all keys together. */
  get size(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let q = this.queues.get(key);
      if (!q) {
        q = [];
        this.queues.set(key, q);
        this.turn.push(key);
      }
      q.push(() => task().then(resolve, reject));
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.turn.length > 0) {
        const key = this.turn.shift()!;
        const q = this.queues.get(key)!;
        const task = q.shift()!;
        if (q.length > 0) this.turn.push(key); // its next task waits for everyone else's turn
        else this.queues.delete(key);
        await task();
      }
    } finally {
      this.running = false;
    }
  }
}
