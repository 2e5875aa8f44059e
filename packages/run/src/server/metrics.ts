// Counters, gauges and histograms for GET /metrics in Prometheus' text format (version 0.0.4).
// Names carry their units (_seconds, _total) as Prometheus' naming guide asks.

const PREFIX = "llamapajamas_";
/** Latency buckets in seconds: a few ms (TTFT of a cached prompt) up to minutes (long generations). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Window over which the tokens/s gauges are measured. */
const RATE_WINDOW_MS = 10_000;

class Histogram {
  private readonly counts = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  private sum = 0;
  private count = 0;

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    const i = LATENCY_BUCKETS.findIndex((b) => seconds <= b);
    if (i >= 0) this.counts[i]!++;
  }

  render(name: string, labels: string): string[] {
    const lines: string[] = [];
    let cumulative = 0;
    LATENCY_BUCKETS.forEach((b, i) => {
      cumulative += this.counts[i]!;
      lines.push(`${name}_bucket{${labels}${labels ? "," : ""}le="${b}"} ${cumulative}`);
    });
    lines.push(`${name}_bucket{${labels}${labels ? "," : ""}le="+Inf"} ${this.count}`);
    lines.push(`${name}_sum${labels ? `{${labels}}` : ""} ${this.sum}`);
    lines.push(`${name}_count${labels ? `{${labels}}` : ""} ${this.count}`);
    return lines;
  }
}

/** Events over the last RATE_WINDOW_MS, for per-second rates. */
class RateWindow {
  private readonly events: { atMs: number; n: number }[] = [];
  private total = 0;

  add(n: number, nowMs = performance.now()): void {
    this.events.push({ atMs: nowMs, n });
    this.total += n;
    this.trim(nowMs);
  }

  perSecond(nowMs = performance.now()): number {
    this.trim(nowMs);
    return this.total / (RATE_WINDOW_MS / 1000);
  }

  private trim(nowMs: number): void {
    while (this.events.length > 0 && this.events[0]!.atMs < nowMs - RATE_WINDOW_MS) this.total -= this.events.shift()!.n;
  }
}

export interface LoadGauges {
  running: number;
  waiting: number;
  parallel: number;
}

export class Metrics {
  private readonly requests = new Map<string, number>();
  private promptTokens = 0;
  private completionTokens = 0;
  private readonly promptRate = new RateWindow();
  private readonly completionRate = new RateWindow();
  private readonly latency = new Map<string, Histogram>();
  private readonly ttft = new Histogram();
  private readonly started = Date.now();
  private rejected = 0;
  private disconnects = 0;

  /** One finished HTTP request. */
  request(route: string, status: number, seconds: number): void {
    const key = `route="${route}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    let h = this.latency.get(route);
    if (h === undefined) this.latency.set(route, (h = new Histogram()));
    h.observe(seconds);
  }

  /** Tokens of one generation (prompt tokens counted once, when it ends). */
  tokens(prompt: number, completion: number): void {
    this.promptTokens += prompt;
    this.completionTokens += completion;
    this.promptRate.add(prompt);
    this.completionRate.add(completion);
  }

  timeToFirstToken(seconds: number): void {
    this.ttft.observe(seconds);
  }

  /** A request turned away because the queue was full. */
  rejectedFull(): void {
    this.rejected++;
  }

  /** A client that went away before its response was complete. */
  disconnect(): void {
    this.disconnects++;
  }

  render(load: LoadGauges | undefined): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) => {
      out.push(`# HELP ${PREFIX}${name} ${help}`, `# TYPE ${PREFIX}${name} ${type}`, ...lines);
    };
    metric("requests_total", "counter", "HTTP requests answered, by route and status.", [...this.requests].map(([k, v]) => `${PREFIX}requests_total{${k}} ${v}`));
    metric("requests_rejected_total", "counter", "Requests refused because the queue was full (503).", [`${PREFIX}requests_rejected_total ${this.rejected}`]);
    metric("client_disconnects_total", "counter", "Clients that went away before their response was complete.", [`${PREFIX}client_disconnects_total ${this.disconnects}`]);
    metric("prompt_tokens_total", "counter", "Prompt tokens of finished generations.", [`${PREFIX}prompt_tokens_total ${this.promptTokens}`]);
    metric("completion_tokens_total", "counter", "Generated tokens.", [`${PREFIX}completion_tokens_total ${this.completionTokens}`]);
    metric("prompt_tokens_per_second", "gauge", `Prompt tokens per second over the last ${RATE_WINDOW_MS / 1000} s.`, [`${PREFIX}prompt_tokens_per_second ${this.promptRate.perSecond()}`]);
    metric("completion_tokens_per_second", "gauge", `Generated tokens per second over the last ${RATE_WINDOW_MS / 1000} s.`, [
      `${PREFIX}completion_tokens_per_second ${this.completionRate.perSecond()}`,
    ]);
    metric("requests_running", "gauge", "Generations running now.", [`${PREFIX}requests_running ${load?.running ?? 0}`]);
    metric("requests_waiting", "gauge", "Generations waiting for a slot (queue depth).", [`${PREFIX}requests_waiting ${load?.waiting ?? 0}`]);
    metric("slots", "gauge", "Generations that can run at once (--parallel).", [`${PREFIX}slots ${load?.parallel ?? 0}`]);
    metric("request_duration_seconds", "histogram", "Time from request to the end of the response, by route.", [...this.latency].flatMap(([route, h]) => h.render(`${PREFIX}request_duration_seconds`, `route="${route}"`)));
    metric("time_to_first_token_seconds", "histogram", "Time from request to the first generated token.", this.ttft.render(`${PREFIX}time_to_first_token_seconds`, ""));
    metric("uptime_seconds", "gauge", "Seconds since the server started.", [`${PREFIX}uptime_seconds ${(Date.now() - this.started) / 1000}`]);
    return out.join("\n") + "\n";
  }
}
