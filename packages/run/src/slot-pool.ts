/**
 * The context's sequences ("slots", llama-server's word) handed out to calls in arrival order.
 * A call takes one slot; benchmark and unload take them all. A waiting call can give up (its
 * AbortSignal), and a free slot whose KV cache already holds the start of the prompt is
 * preferred, as llama-server picks slots by prompt similarity.
 */
export class SlotPool {
  private readonly free: number[];
  private readonly waiters: Waiter[] = [];
  /** The tokens each slot's KV cache held when it was last released. */
  private readonly cached: (readonly number[])[];

  constructor(readonly size: number) {
    this.free = Array.from({ length: size }, (_, i) => i);
    this.cached = Array.from({ length: size }, () => []);
  }

  /** Slots generating now. */
  get busy(): number {
    return this.size - this.free.length;
  }

  /** Calls waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * A slot: at once when one is free (the one sharing the longest prefix with `tokens`), else
   * after the calls before this one. Undefined when `signal` fires first.
   */
  acquire(options: { tokens?: readonly number[]; signal?: AbortSignal | undefined } = {}): Promise<number | undefined> {
    const { tokens, signal } = options;
    if (signal?.aborted) return Promise.resolve(undefined);
    if (this.waiters.length === 0 && this.free.length > 0) return Promise.resolve(this.takeFree(tokens));
    return new Promise((resolve) => {
      const waiter: Waiter = { all: false, got: [], resolve: (slots) => resolve(slots[0]) };
      if (signal !== undefined) {
        const onAbort = () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          resolve(undefined);
          this.dispatch();
        };
        signal.addEventListener("abort", onAbort, { once: true });
        waiter.cleanup = () => signal.removeEventListener("abort", onAbort);
      }
      this.waiters.push(waiter);
    });
  }

  /** Every slot, once the calls before have finished; returns the function that gives them back. */
  acquireAll(): Promise<() => void> {
    return new Promise((resolve) => {
      this.waiters.push({ all: true, got: [], resolve: (slots) => resolve(() => slots.forEach((s) => this.release(s))) });
      this.dispatch();
    });
  }

  /** Gives a slot back; `cachedTokens` is what its KV cache now holds. */
  release(slot: number, cachedTokens?: readonly number[]): void {
    if (cachedTokens !== undefined) this.cached[slot] = cachedTokens;
    this.free.push(slot);
    this.dispatch();
  }

  private takeFree(tokens: readonly number[] | undefined): number {
    let best = 0;
    if (tokens !== undefined && tokens.length > 0) {
      let bestLength = -1;
      this.free.forEach((slot, i) => {
        const n = commonPrefixLength(this.cached[slot]!, tokens);
        if (n > bestLength) [best, bestLength] = [i, n];
      });
    }
    return this.free.splice(best, 1)[0]!;
  }

  /** Strict arrival order: a waiter collecting every slot holds back those behind it. */
  private dispatch(): void {
    while (this.waiters.length > 0 && this.free.length > 0) {
      const head = this.waiters[0]!;
      if (!head.all) {
        this.waiters.shift();
        head.cleanup?.();
        head.resolve([this.takeFree(undefined)]);
        continue;
      }
      head.got.push(...this.free.splice(0));
      if (head.got.length < this.size) return;
      this.waiters.shift();
      head.resolve(head.got);
    }
  }
}

interface Waiter {
  all: boolean;
  got: number[];
  resolve: (slots: number[]) => void;
  cleanup?: () => void;
}

function commonPrefixLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
