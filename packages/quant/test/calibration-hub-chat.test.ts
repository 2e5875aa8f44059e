// `--calibration-chat-template`: wikitext rows from a stand-in dataset viewer, cut into ~1 KiB
// pieces and rendered as user turns with qwen3-tiny's own chat template; the importance matrix
// is the engine's on exactly that text with its special tokens parsed. A model without a
// template is refused with the way out.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PajamasError } from "@llama-pajamas/artifact";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { calibrateCheckpoint } from "../src/calibration/calibrate.js";
import { chatTurns, formatAsChat } from "../src/calibration/chat-format.js";
import { computeImatrix } from "../src/calibration/imatrix.js";
import { convert } from "../src/pipeline.js";
import { EngineModel } from "../src/quantize/native.js";
import { type FakeDatasetsServer, startFakeDatasetsServer, wikitextRows } from "./datasets-server-fake.js";
import { FIXTURES, SHARED } from "./helpers.js";

const WIKI = wikitextRows(readFileSync(join(SHARED, "fixtures", "text", "calib.txt"), "utf8"));
const QWEN_TEMPLATE = (JSON.parse(readFileSync(join(FIXTURES, "qwen3-tiny", "tokenizer_config.json"), "utf8")) as { chat_template: string }).chat_template;

let server: FakeDatasetsServer;
let dir: string;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  server = await startFakeDatasetsServer({ "Salesforce/wikitext|wikitext-2-raw-v1|train": WIKI });
  dir = await mkdtemp(join(tmpdir(), "lp-calib-chat-"));
  env = { HF_HOME: join(dir, "hf"), HF_DATASETS_SERVER: server.endpoint };
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const f16Of = async (model: string, output: string) =>
  (await convert({ model, output, precisions: ["F16"], force: true, threads: 1 })).files[0]!.path;

describe("calibration text as chat turns", () => {
  it("cuts text at line ends into ~1 KiB turns and renders each with the template", () => {
    const text = `a\n\nb\n${"x".repeat(30)}\n${"y".repeat(30)}\n`;
    expect(chatTurns(text, 32)).toEqual([`a\n\nb\n${"x".repeat(30)}`, "y".repeat(30)]);
    expect(formatAsChat("hello\nworld\n", { template: QWEN_TEMPLATE, eosToken: "<|im_end|>" })).toBe("<|im_start|>user\nhello\nworld<|im_end|>\n");
    expect(() => formatAsChat("x", { template: "{% if %}", eosToken: "" })).toThrow(/chat template cannot be parsed.*drop --calibration-chat-template/);
  });

  it("calibrates qwen3-tiny on wikitext rows rendered with its chat template, special tokens parsed", async () => {
    const cal = await calibrateCheckpoint({
      model: join(FIXTURES, "qwen3-tiny"),
      calibrate: { dataset: "wikitext", samples: 2, ctx: 128, chatTemplate: true, threads: 1 },
      convertF16: f16Of,
      hub: { env },
    });
    try {
      const rows = cal.text.info.rows!;
      const raw = WIKI.slice(0, rows).map((r) => (r.text as string) || " \n").join("");
      const want = chatTurns(raw).map((t) => `<|im_start|>user\n${t}<|im_end|>\n`).join("");
      expect(Buffer.from(cal.text.text).toString("utf8")).toBe(want);
      expect(cal.text.info).toMatchObject({ source: "dataset", chatTemplate: true, bytes: Buffer.byteLength(want), sha256: createHash("sha256").update(want).digest("hex") });
      expect(cal.text.name).toBe(`Salesforce/wikitext wikitext-2-raw-v1 train[0:${rows}] (as chat turns)`);
      expect(cal.result).toMatchObject({ chunkCount: 2, tokens: 256, datasets: [cal.text.name] });

      const model = EngineModel.load(cal.f16Path);
      try {
        // <|im_start|> is one token only when special tokens are parsed
        const imStart = model.tokenize("<|im_start|>", { addSpecial: false, parseSpecial: true });
        expect(imStart.length).toBe(1);
        const direct = await computeImatrix({ model, text: want, dataset: "x", ctx: 128, chunks: 2, parseSpecial: true, threads: 1 });
        for (const [k, e] of direct.entries) expect(Buffer.from(cal.result.entries.get(k)!.sums.buffer).equals(Buffer.from(e.sums.buffer))).toBe(true);
      } finally {
        model.free();
      }
    } finally {
      await cal.cleanup();
    }
  });

  it("refuses a model without a chat template", async () => {
    const e = await calibrateCheckpoint({
      model: join(FIXTURES, "llama-tiny"),
      calibrate: { chatTemplate: true, samples: 1, ctx: 64, threads: 1 },
      convertF16: f16Of,
    }).catch((x: unknown) => x);
    expect((e as PajamasError).code).toBe("E_TEMPLATE");
    expect((e as Error).message).toMatch(/llama-tiny has no chat template \(tokenizer.chat_template\); drop --calibration-chat-template/);
  });
});
