/** A one-line progress bar on a terminal stream (stderr), redrawn at most 10 times a second. */
export class ProgressBar {
  private last = 0;
  private readonly started = Date.now();

  constructor(
    private readonly out: NodeJS.WritableStream & { columns?: number },
    private readonly total: number,
  ) {}

  /** Shows `done` of `total` bytes. */
  update(done: number): void {
    const now = Date.now();
    if (now - this.last < 100) return;
    this.last = now;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 0;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - 40));
    const filled = Math.round(frac * width);
    const mb = (n: number) => (n / (1 << 20)).toFixed(0);
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? `${mb(done / secs)} MB/s` : '';
    this.out.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${mb(done)}/${mb(this.total)} MB ${rate}\x1b[K`);
  }

  /** Erases the bar. */
  clear(): void {
    if (this.last !== 0) this.out.write('\r\x1b[K');
  }
}
