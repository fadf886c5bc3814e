// Greedy pair merging, the loop both vocabulary tokenizers run over one run of text: SentencePiece
// (./tokenizer-spm) by piece score, byte-level BPE (./tokenizer-bpe) by merge rank. Each caller says how good it is
// to join two adjacent symbols; the best pair is joined, its neighbours are offered again, until nothing joins.
// Not here: what a symbol is or what it is worth (the callers), special pieces (./tokenizer-special).

/**
 * Merge a row of `count` symbols in place. `len[i]` is symbol i's starting length (in whatever units the caller's
 * text uses); a merge grows the left symbol over the right one, whose length becomes 0, so each live symbol keeps
 * its start. `priority(left, right)` rates joining two adjacent live symbols (it may read `len`): higher first, and
 * among equals the leftmost pair, which decides ties exactly as llama.cpp's priority queues do; undefined means the
 * two never join. Returns the `next` links: following them from 0 (to -1) visits the final symbols in order.
 */
export function mergeSymbols(
  len: Int32Array,
  count: number,
  priority: (left: number, right: number) => number | undefined,
): Int32Array {
  const prev = new Int32Array(count);
  const next = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < count ? i + 1 : -1;
  }
  const queue = new MergeQueue();
  const offer = (left: number, right: number): void => {
    if (left < 0 || right < 0) return;
    const p = priority(left, right);
    if (p !== undefined) queue.push(p, left, right, len[left] + len[right]);
  };
  for (let i = 1; i < count; i++) offer(i - 1, i);
  while (queue.length > 0) {
    const { left, right, size } = queue.pop();
    // Stale candidate: one side was merged into something else since it was offered.
    if (len[left] === 0 || len[right] === 0 || len[left] + len[right] !== size) continue;
    len[left] = size;
    len[right] = 0;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    offer(prev[left], left);
    offer(left, next[left]);
  }
  return next;
}

interface Candidate {
  priority: number;
  left: number;
  right: number;
  size: number;
}

/** Candidate merges, best first: the highest priority, and among equal priorities the leftmost pair. */
class MergeQueue {
  private readonly items: Candidate[] = [];

  get length(): number {
    return this.items.length;
  }

  push(priority: number, left: number, right: number, size: number): void {
    const items = this.items;
    items.push({ priority, left, right, size });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop(): Candidate {
    const items = this.items;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && this.before(l, best)) best = l;
        if (r < items.length && this.before(r, best)) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best], items[i]];
        i = best;
      }
    }
    return top;
  }

  private before(a: number, b: number): boolean {
    const x = this.items[a];
    const y = this.items[b];
    return x.priority > y.priority || (x.priority === y.priority && x.left < y.left);
  }
}
