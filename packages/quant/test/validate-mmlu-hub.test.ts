// `validate --metrics mmlu --mmlu cais/mmlu --mmlu-questions N` against a stand-in dataset viewer
// (datasets-server-fake.ts): N questions spread evenly over the split (every subject its share),
// only the pages holding them fetched, cached for the next run (offline, no request), accuracy
// scored by the engine on llama-tiny equal to scoring the same rows directly, and errors that
// say what to do instead.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PajamasError, UsageError } from "@llama-pajamas/artifact";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convert } from "../src/pipeline.js";
import { BUILTIN_MMLU } from "../src/validation/mmlu-builtin.js";
import { mmluQuestions, parseMMLUDataset, parseMMLUSource } from "../src/validation/mmlu-source.js";
import { type MultipleChoiceQuestion, multipleChoiceAccuracy, selectQuestions } from "../src/validation/multiple-choice.js";
import { validate } from "../src/validation/validate.js";
import { startCli } from "./cli-helpers.js";
import { type FakeDatasetsServer, startFakeDatasetsServer } from "./datasets-server-fake.js";
import { FIXTURES } from "./helpers.js";

// cais/mmlu's `all` config is sorted by subject: five subjects of 50 questions here
const SUBJECTS = ["astronomy", "college_biology", "high_school_geography", "marketing", "world_religions"];
const ROWS = SUBJECTS.flatMap((subject, s) =>
  Array.from({ length: 50 }, (_, k) => {
    const q = BUILTIN_MMLU[(s * 50 + k) % BUILTIN_MMLU.length]!;
    return { question: q.question, subject, choices: q.choices, answer: q.answer };
  }),
);
const asQuestion = (r: (typeof ROWS)[number]): MultipleChoiceQuestion => ({ question: r.question, choices: r.choices, answer: r.answer, subject: r.subject });

let server: FakeDatasetsServer;
let dir: string;
let env: NodeJS.ProcessEnv;
const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

beforeAll(async () => {
  server = await startFakeDatasetsServer({ "cais/mmlu|all|test": ROWS, "cais/mmlu|astronomy|test": ROWS.slice(0, 50) });
  dir = await mkdtemp(join(tmpdir(), "lp-mmlu-hub-"));
  env = { HF_HOME: join(dir, "hf"), HF_DATASETS_SERVER: server.endpoint };
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe("MMLU questions from the hub", () => {
  it("takes N questions spread evenly, fetching only their pages, and caches them", async () => {
    const set = await mmluQuestions({ dataset: "cais/mmlu", limit: 20, hub: { env } });
    // strata of 12.5 rows: the middle of each
    const indices = Array.from({ length: 20 }, (_, i) => Math.floor(((2 * i + 1) * 250) / 40));
    expect(indices.slice(0, 5)).toEqual([6, 18, 31, 43, 56]);
    expect(set.questions).toEqual(indices.map((i) => asQuestion(ROWS[i]!)));
    expect(SUBJECTS.map((s) => set.questions.filter((q) => q.subject === s).length)).toEqual([4, 4, 4, 4, 4]);
    expect(set).toMatchObject({ source: "cais/mmlu (all, test)", available: 250, requests: 3 });
    expect(server.requests.map((r) => r.params).sort((a, b) => Number(a.offset) - Number(b.offset))).toEqual(
      [0, 100, 200].map((o) => ({ dataset: "cais/mmlu", config: "all", split: "test", offset: String(o), length: "100" })),
    );
    const again = await mmluQuestions({ dataset: "cais/mmlu", limit: 20, hub: { env: { ...env, HF_HUB_OFFLINE: "1" } } });
    expect(again.questions).toEqual(set.questions);
    expect(again.requests).toBe(0);
    expect(server.requests.length).toBe(3);
    // every question, and another config
    expect((await mmluQuestions({ dataset: "cais/mmlu", hub: { env } })).questions).toEqual(ROWS.map(asQuestion));
    const astro = await mmluQuestions({ dataset: "cais/mmlu:astronomy", limit: 5, hub: { env } });
    expect(astro.questions.map((q) => q.subject)).toEqual(Array(5).fill("astronomy"));
    expect(astro.source).toBe("cais/mmlu (astronomy, test)");
  });

  it("offline with nothing cached, or an unknown dataset: errors that name the way out", async () => {
    const empty = { HF_HOME: join(dir, "empty"), HF_DATASETS_SERVER: server.endpoint, HF_HUB_OFFLINE: "1" };
    const e = await mmluQuestions({ dataset: "cais/mmlu", limit: 5, hub: { env: empty } }).catch((x: unknown) => x);
    expect((e as PajamasError).code).toBe("E_OFFLINE_MISSING");
    expect((e as Error).message).toMatch(/^HF_HUB_OFFLINE is set and the cache .* does not hold rows 0-99 of cais\/mmlu \(all, test\); run once online .*--mmlu-file FILE/);
    const n = await mmluQuestions({ dataset: "someone/mmlu-copy", hub: { env } }).catch((x: unknown) => x);
    expect((n as PajamasError).code).toBe("E_DATASET_NOT_FOUND");
    expect((n as Error).message).toMatch(/rows 0-99 of someone\/mmlu-copy \(default, test\) \(HTTP 404\)/);
  });

  it("parses sources: builtin, files, and org/name[:config[:split]]", async () => {
    expect(parseMMLUDataset("cais/mmlu")).toEqual({ dataset: "cais/mmlu", config: "all", split: "test" });
    expect(parseMMLUDataset("cais/mmlu:anatomy:validation")).toEqual({ dataset: "cais/mmlu", config: "anatomy", split: "validation" });
    expect(parseMMLUDataset("org/x")).toEqual({ dataset: "org/x", config: "default", split: "test" });
    expect(() => parseMMLUDataset("mmlu")).toThrow(UsageError);
    expect(await parseMMLUSource("builtin")).toEqual({});
    expect(await parseMMLUSource("questions/abstract_algebra_test.csv")).toEqual({ path: "questions/abstract_algebra_test.csv" });
    expect(await parseMMLUSource("cais/mmlu")).toEqual({ dataset: "cais/mmlu" });
    await expect(parseMMLUSource("what ever")).rejects.toThrow(UsageError);
    // a limit on the built-in set (or a file) spreads too
    expect(selectQuestions(BUILTIN_MMLU, 5).map((q) => q.subject)).toEqual(["computer_science", "mathematics", "science", "history", "miscellaneous"]);
  });
});

describe("validate with cais/mmlu from the hub", () => {
  let f16: string;
  let q8: string;
  let mmlu: { original: number; quantized: number; questions: number };

  beforeAll(async () => {
    await convert({ model: join(FIXTURES, "llama-tiny"), output: join(dir, "llama-tiny"), precisions: ["F16", "Q8_0"], threads: 1 });
    f16 = join(dir, "llama-tiny", "gguf", "llama-tiny-f16.gguf");
    q8 = join(dir, "llama-tiny", "gguf", "llama-tiny-q8_0.gguf");
  });

  it("scores the spread questions with the engine, as scoring those rows directly does", async () => {
    const report = await validate({ original: f16, quantized: q8, metrics: ["mmlu"], mmlu: { dataset: "cais/mmlu", limit: 20 }, hub: { env }, threads: 1 });
    const questions = (await mmluQuestions({ dataset: "cais/mmlu", limit: 20, hub: { env } })).questions;
    const a = await multipleChoiceAccuracy(f16, { questions, threads: 1 });
    const b = await multipleChoiceAccuracy(q8, { questions, threads: 1 });
    expect(report.mmlu).toEqual({ original: a.accuracy, quantized: b.accuracy, questions: 20 });
    expect(report.mmluSource).toEqual({ source: "cais/mmlu (all, test)", available: 250 });
    expect(a.correct).toBe(Math.round((a.accuracy * 20) / 100));
    mmlu = report.mmlu!;
  });

  it("runs through the CLI offline from the cache with no request; fails clearly with an empty cache", async () => {
    const before = server.requests.length;
    const args = ["validate", "--original", f16, "--quantized", q8, "--metrics", "mmlu", "--mmlu", "cais/mmlu", "--mmlu-questions", "20", "--threads", "1"];
    const offline = `export HF_HOME=${shellQuote(env.HF_HOME!)} HF_DATASETS_SERVER=${shellQuote(server.endpoint)} HF_HUB_OFFLINE=1`;
    const r = await startCli([...args, "--json"], { shell: offline }).done;
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { mmlu: unknown }).mmlu).toEqual(mmlu);
    const text = await startCli(args, { shell: offline }).done;
    expect(text.stdout).toMatch(/multiple choice\s+\d+\.\d\d % original, \d+\.\d\d % quantized \(20 questions of 250, cais\/mmlu \(all, test\)\)/);
    expect(server.requests.length).toBe(before);

    const empty = `export HF_HOME=${shellQuote(join(dir, "empty"))} HF_DATASETS_SERVER=${shellQuote(server.endpoint)} HF_HUB_OFFLINE=1`;
    const failed = await startCli(args, { shell: empty }).done;
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^error: HF_HUB_OFFLINE is set .* cais\/mmlu \(all, test\).*--mmlu-file FILE/);

    const usage = await startCli(["validate", "--original", f16, "--quantized", q8, "--mmlu", "cais/mmlu"]).done;
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^error: --mmlu applies to the mmlu metric; add it to --metrics/);
  });
});
