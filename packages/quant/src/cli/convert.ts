import { UsageError } from "@llama-pajamas/artifact";
import { convert } from "../pipeline.js";
import { type OutputFormat, parseFormats } from "../mlx/index.js";
import { type Command, optionalInt, requireString } from "./args.js";
import { CONVERT_STEP_OPTIONS, CONVERT_STEP_USAGE, convertStepOptions, convertStepSummary } from "./validate.js";
import { downloadProgress } from "./download-progress.js";
import { formatBytes, tensorProgress } from "./progress.js";

const usage = `Usage: llama-pajamas-quant convert --model DIR|ORG/NAME[@REV] --output DIR [options]

Converts a Hugging Face checkpoint (config.json + safetensors) to GGUF in one pass, and/or to
an MLX model directory (mlx/) that mlx_lm.load reads as it is.

Required:
  --model MODEL        local checkpoint directory, or a Hugging Face hub id org/name[@revision]:
                       fetched into the Hugging Face cache (HF_HUB_CACHE / HF_HOME, shared with
                       Python tools) unless there already; HF_TOKEN, HF_ENDPOINT and
                       HF_HUB_OFFLINE=1 work as in huggingface_hub
  --output DIR         artifact directory to create (gguf/, manifest.json)

Optional:
  --formats LIST       gguf (default), mlx, or gguf,mlx
  --precision LIST     comma-separated GGUF methods (default: q4_k_m), e.g. q4_k_m,q8_0,f16;
                       see \`llama-pajamas-quant list-methods\`. With gguf,mlx: GGUF:MLX pairs,
                       e.g. q4_k_m:4bit (default), q4_k_m:4bit_mixed,q8_0. With mlx alone: one
                       MLX precision (default 4bit): 2bit 3bit 4bit 5bit 6bit 8bit, 4bit_mixed
                       (embeddings 6 bits), mlx-lm's mixed_2_6 mixed_3_4 mixed_3_6 mixed_4_6,
                       or bf16 f16 f32 (unquantized)
  --group-size N       MLX quantization group size: 32, 64 (default) or 128
  --imatrix FILE       llama.cpp importance matrix (.gguf or legacy .dat); required by IQ2/IQ3
  --intermediate T     auto|f32|f16|bf16: the float type quantized tensors pass through, so the
                       bytes equal llama-quantize run on a GGUF of that type (default auto: the
                       checkpoint's own dtype)
  --threads N          quantization threads (default: all cores)
${CONVERT_STEP_USAGE}
  --force              replace an existing output directory
  --quiet              no progress output (downloads included)
  --json               print a JSON summary on stdout`;

export const convertCommand: Command = {
  name: "convert",
  summary: "convert a Hugging Face checkpoint to GGUF and/or MLX",
  usage,
  options: {
    model: { type: "string" },
    output: { type: "string" },
    formats: { type: "string" },
    precision: { type: "string" },
    "group-size": { type: "string" },
    imatrix: { type: "string" },
    intermediate: { type: "string" },
    threads: { type: "string" },
    force: { type: "boolean" },
    quiet: { type: "boolean" },
    json: { type: "boolean" },
    ...CONVERT_STEP_OPTIONS,
  },
  async run(values) {
    const model = requireString(values, "model", usage);
    const output = requireString(values, "output", usage);
    let formats: OutputFormat[];
    try {
      formats = parseFormats(String(values.formats ?? "gguf").split(","));
    } catch (e) {
      throw new UsageError(`--formats: ${(e as Error).message}`);
    }
    const mlxGroupSize = optionalInt(values, "group-size");
    if (mlxGroupSize !== undefined && !formats.includes("mlx")) throw new UsageError("--group-size applies to MLX output; add --formats mlx or gguf,mlx");
    const defaultPrecision = formats.includes("mlx") ? (formats.includes("gguf") ? "q4_k_m:4bit" : "4bit") : "q4_k_m";
    const intermediate = String(values.intermediate ?? "auto");
    if (!["auto", "f32", "f16", "bf16"].includes(intermediate)) {
      throw new UsageError(`--intermediate must be one of auto, f32, f16, bf16; got ${JSON.stringify(intermediate)}`);
    }
    const quiet = values.quiet === true || values.json === true;
    const progress = tensorProgress({ quiet });
    const downloads = downloadProgress({ quiet });
    // Ctrl-C stops between tensors; the pipeline then deletes its temporary output.
    const abort = new AbortController();
    const onSigint = () => abort.abort();
    process.once("SIGINT", onSigint);
    process.once("SIGTERM", onSigint);
    const steps = convertStepOptions(values);
    const result = await convert({
      ...steps,
      signal: abort.signal,
      model,
      output,
      formats,
      precisions: String(values.precision ?? defaultPrecision).split(",").map((p) => p.trim()).filter(Boolean),
      mlxGroupSize,
      imatrixPath: values.imatrix as string | undefined,
      intermediate: intermediate as "auto",
      threads: optionalInt(values, "threads"),
      force: values.force === true,
      onProgress: progress,
      hub: { onEvent: downloads },
    }).finally(() => downloads.done());
    progress.done();
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
    if (values.json === true) {
      process.stdout.write(JSON.stringify(result, null, 2) + "\n");
    } else if (values.quiet !== true) {
      for (const f of result.files) {
        process.stdout.write(
          `${f.method.padEnd(8)} ${formatBytes(f.sizeBytes).padStart(10)}  ${f.compressionRatio.toFixed(1)}x  ${f.path}\n`,
        );
      }
      if (result.mlx) {
        const m = result.mlx;
        process.stdout.write(`${m.method.padEnd(8)} ${formatBytes(m.sizeBytes).padStart(10)}  ${m.compressionRatio.toFixed(1)}x  ${m.dir}/ (MLX)\n`);
      }
      process.stdout.write(
        `${result.architecture.type} (${result.architecture.family}, ${result.architecture.paramsTotal.toLocaleString("en")} params) ` +
          `converted in ${result.seconds.toFixed(1)}s; manifest: ${result.manifestPath}\n`,
      );
      process.stdout.write(convertStepSummary(result));
    }
    return 0;
  },
};
