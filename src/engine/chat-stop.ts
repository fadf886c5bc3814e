// Stop strings over streamed text: text arrives a token at a time, and a stop string may be split across tokens
// ("\nUs" + "er:"), so text that could still be the start of a stop string is held back until the next piece decides.
// What is emitted never contains a stop string, and everything emitted plus flush() is the text up to the first one.
// Not here: stop token ids (the generation loop and the chat engine check those), or sampling.

export interface StopPush {
  /** text that is now certain to be part of the reply */
  text: string;
  /** a stop string was completed; nothing more will be emitted */
  stopped: boolean;
}

export class StopStringFilter {
  private readonly stops: readonly string[];
  private held = '';
  private done = false;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  push(piece: string): StopPush {
    if (this.done) return { text: '', stopped: true };
    const buf = this.held + piece;
    // The earliest stop string in the buffer ends the reply just before it.
    let cut = -1;
    for (const s of this.stops) {
      const at = buf.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.done = true;
      this.held = '';
      return { text: buf.slice(0, cut), stopped: true };
    }
    // Hold back the longest tail of the buffer that is a proper prefix of some stop string.
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > hold; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    this.held = buf.slice(buf.length - hold);
    return { text: buf.slice(0, buf.length - hold), stopped: false };
  }

  /** The generation ended without a stop string: release what was held back. */
  flush(): string {
    if (this.done) return '';
    const out = this.held;
    this.held = '';
    return out;
  }
}
