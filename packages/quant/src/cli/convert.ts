import { UsageError } from "@llama-pajamas/artifact";
import { convert } from "../pipeline.js";
import { type Command, optionalInt, requireString } from "./args.js";
import { formatBytes, tensorProgress } from "./progress.js";

const usage = `Usage: llama-pajamas-quant convert --model DIR --output DIR [options]

Converts a Hugging Face checkpoint (config.json + safetensors) to GGUF in one pass.

Required:
  --model DIR          local checkpoint directory
  --output DIR         artifact directory to create (gguf/, manifest.json)

Optional:
  --formats LIST       output formats (default: gguf; only gguf exists so far)
  --precision LIST     comma-separated GGUF methods (default: q4_k_m), e.g. q4_k_m,q8_0,f16;
                       see \`llama-pajamas-quant list-methods\`
  --imatrix FILE       llama.cpp importance matrix (.gguf or legacy .dat); required by IQ2/IQ3
  --intermediate T     auto|f32|f16|bf16: the float type quantized tensors pass through, so the
                       bytes equal llama-quantize run on a GGUF of that type (default auto: the
                       checkpoint's own dtype)
  --threads N          quantization threads (default: all cores)
  --force              replace an existing output directory
  --quiet              no progress output
  --json               print a JSON summary on stdout`;

export const convertCommand: Command = {
  name: "convert",
  summary: "convert a Hugging Face checkpoint to GGUF",
  usage,
  options: {
    model: { type: "string" },
    output: { type: "string" },
    formats: { type: "string" },
    precision: { type: "string" },
    imatrix: { type: "string" },
    intermediate: { type: "string" },
    threads: { type: "string" },
    force: { type: "boolean" },
    quiet: { type: "boolean" },
    json: { type: "boolean" },
  },
  async run(values) {
    const model = requireString(values, "model", usage);
    const output = requireString(values, "output", usage);
    const formats = String(values.formats ?? "gguf")
      .split(",")
      .map((f) => f.trim().toLowerCase())
      .filter(Boolean);
    for (const f of formats) {
      if (f !== "gguf") {
        throw new UsageError(`--formats ${f} is not available yet; this version writes gguf only`);
      }
    }
    const intermediate = String(values.intermediate ?? "auto");
    if (!["auto", "f32", "f16", "bf16"].includes(intermediate)) {
      throw new UsageError(`--intermediate must be one of auto, f32, f16, bf16; got ${JSON.stringify(intermediate)}`);
    }
    const quiet = values.quiet === true || values.json === true;
    const progress = tensorProgress({ quiet });
    // Ctrl-C stops between tensors; the pipeline then deletes its temporary output.
    const abort = new AbortController();
    const onSigint = () => abort.abort();
    process.once("SIGINT", onSigint);
    process.once("SIGTERM", onSigint);
    const result = await convert({
      signal: abort.signal,
      model,
      output,
      formats: ["gguf"],
      precisions: String(values.precision ?? "q4_k_m").split(",").map((p) => p.trim()).filter(Boolean),
      imatrixPath: values.imatrix as string | undefined,
      intermediate: intermediate as "auto",
      threads: optionalInt(values, "threads"),
      force: values.force === true,
      onProgress: progress,
    });
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
      process.stdout.write(
        `${result.architecture.type} (${result.architecture.family}, ${result.architecture.paramsTotal.toLocaleString("en")} params) ` +
          `converted in ${result.seconds.toFixed(1)}s; manifest: ${result.manifestPath}\n`,
      );
    }
    return 0;
  },
};
