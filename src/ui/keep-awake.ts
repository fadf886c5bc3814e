// The screen Wake Lock a contributing tab holds so the device does not sleep while it serves others: taken at start,
// taken again when the tab becomes visible (browsers drop it when a tab is hidden), released at stop. DOM only.

export type WakeLockState = 'held' | 'unsupported' | 'refused' | 'released';

export class KeepAwake {
  state: WakeLockState = 'released';
  private lock: WakeLockSentinel | null = null;
  private stopped = false;
  private readonly onVisible = (): void => {
    if (document.visibilityState === 'visible' && !this.stopped) void this.take();
  };

  async start(): Promise<void> {
    document.addEventListener('visibilitychange', this.onVisible);
    await this.take();
  }

  private async take(): Promise<void> {
    if (!('wakeLock' in navigator)) {
      this.state = 'unsupported';
      return;
    }
    try {
      this.lock = await navigator.wakeLock.request('screen');
      this.state = 'held';
      this.lock.addEventListener('release', () => {
        if (!this.stopped) this.state = 'released';
      });
    } catch {
      this.state = 'refused'; // hidden tab, battery saver, or a permissions policy: serving goes on regardless
    }
  }

  stop(): void {
    this.stopped = true;
    document.removeEventListener('visibilitychange', this.onVisible);
    void this.lock?.release().catch(() => {});
    this.state = 'released';
  }
}
