// Multiple choice in MMLU's format: the file readers, the prompt, the built-in set, and the
// engine's scoring of llama-tiny (one prompt pass per question, letters scored by likelihood).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InputError } from "@llama-pajamas/artifact";
import { convert } from "../src/pipeline.js";
import { EngineModel } from "../src/quantize/native.js";
import { BUILTIN_MMLU } from "../src/validation/mmlu-builtin.js";
import {
  loadMultipleChoice,
  mmluPrompt,
  multipleChoiceAccuracy,
  parseCSVRows,
  parseMultipleChoiceCSV,
  parseMultipleChoiceJSONL,
} from "../src/validation/multiple-choice.js";
import { FIXTURES } from "./helpers.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lp-validate-mmlu-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("question files", () => {
  it("reads JSONL with choices arrays or A-D fields, answers as index or letter", () => {
    const qs = parseMultipleChoiceJSONL(
      [
        JSON.stringify({ question: "2+2?", choices: ["3", "4", "5", "6"], answer: 1, subject: "math" }),
        "",
        JSON.stringify({ question: "Capital of Italy?", A: "Rome", B: "Paris", C: "Oslo", D: "Bern", answer: "a" }),
      ].join("\n"),
    );
    expect(qs).toEqual([
      { question: "2+2?", choices: ["3", "4", "5", "6"], answer: 1, subject: "math" },
      { question: "Capital of Italy?", choices: ["Rome", "Paris", "Oslo", "Bern"], answer: 0 },
    ]);
  });

  it("reads MMLU's CSV layout with quoted fields, and skips a header row", () => {
    expect(parseCSVRows('a,"b, c","say ""hi""\nthere"\r\nx,y,z\n')).toEqual([["a", "b, c", 'say "hi"\nthere'], ["x", "y", "z"]]);
    const qs = parseMultipleChoiceCSV('question,A,B,C,D,answer\n"Which, of these?",w,x,y,z,C\n', "t.csv", "logic");
    expect(qs).toEqual([{ question: "Which, of these?", choices: ["w", "x", "y", "z"], answer: 2, subject: "logic" }]);
  });

  it("says which line is wrong", async () => {
    expect(() => parseMultipleChoiceJSONL('{"question":"q","choices":["a","b","c"],"answer":0}', "q.jsonl")).toThrow(/q.jsonl: line 1: expected four choices/);
    expect(() => parseMultipleChoiceJSONL('{"question":"q","choices":["a","b","c","d"],"answer":"E"}', "q.jsonl")).toThrow(/answer "E"/);
    expect(() => parseMultipleChoiceCSV("q,a,b,c\n", "x.csv")).toThrow(/row 1: expected 6 columns/);
    const path = join(dir, "empty.jsonl");
    await writeFile(path, "\n");
    await expect(loadMultipleChoice(path)).rejects.toThrow(InputError);
    await expect(loadMultipleChoice(join(dir, "missing.csv"))).rejects.toThrow(/cannot read/);
  });

  it("takes the subject from MMLU's file names", async () => {
    const path = join(dir, "high_school_physics_test.csv");
    await writeFile(path, "What is g?,9.8 m/s^2,1 m/s^2,0,100,A\n");
    expect((await loadMultipleChoice(path))[0]!.subject).toBe("high_school_physics");
  });
});

describe("prompt and built-in set", () => {
  it("formats lm-evaluation-harness's MMLU prompt", () => {
    const q = { question: "2+2?", choices: ["3", "4", "5", "6"], answer: 1, subject: "elementary_mathematics" };
    expect(mmluPrompt(q)).toBe("The following are multiple choice questions (with answers) about elementary mathematics.\n\n2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:");
    expect(mmluPrompt(q, [q])).toContain("D. 6\nAnswer: B\n\n2+2?");
  });

  it("has 40 well-formed questions with answers spread evenly over A-D", () => {
    expect(BUILTIN_MMLU).toHaveLength(40);
    const counts = [0, 0, 0, 0];
    for (const q of BUILTIN_MMLU) {
      expect(q.choices).toHaveLength(4);
      expect(new Set(q.choices).size).toBe(4);
      counts[q.answer]!++;
    }
    expect(counts).toEqual([10, 10, 10, 10]);
  });
});

describe("scoring with the engine", () => {
  it("scores llama-tiny F16 and Q8_0 on the built-in set deterministically, one pass per question", async () => {
    await convert({ model: join(FIXTURES, "llama-tiny"), output: join(dir, "llama-tiny"), precisions: ["F16", "Q8_0"], threads: 1 });
    const f16 = EngineModel.load(join(dir, "llama-tiny", "gguf", "llama-tiny-f16.gguf"));
    try {
      // " A" .. " D" are single tokens after "Answer:" in the Llama-2 vocabulary: the fast path
      const a = await multipleChoiceAccuracy(f16, { questions: BUILTIN_MMLU, threads: 1 });
      const b = await multipleChoiceAccuracy(f16, { questions: BUILTIN_MMLU, threads: 1 });
      expect(a).toEqual(b);
      expect(a.questions).toBe(40);
      expect(a.correct).toBe(Math.round((a.accuracy * 40) / 100));
      // scoring the choices' text takes the four-sequence path (multi-token continuations)
      const c = await multipleChoiceAccuracy(f16, { questions: BUILTIN_MMLU.slice(0, 8), score: "text", threads: 1 });
      expect(c.chosen).toHaveLength(8);
      expect(c).toEqual(await multipleChoiceAccuracy(f16, { questions: BUILTIN_MMLU.slice(0, 8), score: "text", threads: 1 }));
    } finally {
      f16.free();
    }
    const q8 = await multipleChoiceAccuracy(join(dir, "llama-tiny", "gguf", "llama-tiny-q8_0.gguf"), { questions: BUILTIN_MMLU, threads: 1 });
    expect(q8.questions).toBe(40);
  });
});
