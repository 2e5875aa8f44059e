// From the checkpoint's tensor list to TensorPlans, in the converter's order
// (conversion/base.py ModelBase.prepare_tensors: generated tensors first, then each source tensor
// in index order through filter_tensors, modify_tensors and map_tensor_name).
import { ConversionError } from "@llama-pajamas/artifact";
import type { NameMap } from "./tensor-names.js";
import { stackTensors } from "./transforms.js";
import type { SourceTensorInfo, TensorPlan } from "./types.js";

/** One checkpoint tensor on its way through the converter. */
export interface SourceItem {
  /** The name after filter_tensors renames (language_model. stripped ...). */
  name: string;
  /** The name in the checkpoint, which TensorPlan.sources refers to. */
  sourceName: string;
  info: SourceTensorInfo;
  /** The first all-digit part of `name` (prepare_tensors' block id). */
  bid: number | undefined;
}

// TextModel.filter_tensors: multimodal towers a text conversion drops.
const SKIP_PREFIXES = ["mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.", "sound_encoder.", "sound_projection.", "speech_embeddings."];
const SKIP_PARTS = [
  "visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "token2wav.", "code2wav.", "projector.",
  "pre_mm_projector_norm", "image_newline", "view_seperator", "patch_embed", "patch_embedding", "patch_merger.",
  "patch_merge_mlp.", "model.connector.",
];
// prepare_tensors: "we don't need these"
const IGNORED_SUFFIXES = [".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq"];

/** TextModel.filter_tensors then ModelBase.filter_tensors: undefined drops the tensor. */
export function textModelFilter(name: string): string | undefined {
  if (SKIP_PREFIXES.some((p) => name.startsWith(p)) || SKIP_PARTS.some((p) => name.includes(p))) return undefined;
  let n = name;
  if (n.endsWith("e_score_correction_bias")) n = n.replace("e_score_correction_bias", "e_score_correction.bias");
  return n.replaceAll("language_model.", "");
}

/** Per-expert tensors that the converter buffers per layer and stacks into 3-D tensors. */
export interface ExpertSpec {
  /** The converter's test for an expert tensor (a substring of the name). */
  match: (name: string) => boolean;
  count: number;
  /** The HF name of one expert's part, e.g. model.layers.{bid}.mlp.experts.{xid}.{part}.weight. */
  expertName: (bid: number, xid: number, part: string) => string;
  /** Parts in emission order, with the merged name the converter maps (including ".weight"). */
  parts: readonly { part: string; merged: (bid: number) => string }[];
}

export interface DecoderPlanOptions {
  arch: string;
  source: ReadonlyMap<string, SourceTensorInfo>;
  names: NameMap;
  blockCount: number;
  /** filter_tensors; defaults to textModelFilter. */
  rename?: (name: string) => string | undefined;
  /** generate_extra_tensors: written before any checkpoint tensor. */
  generated?: TensorPlan[];
  /** Handles a tensor itself (a split); return undefined to leave it to the default path. */
  special?: (item: SourceItem, names: NameMap) => TensorPlan[] | undefined;
  experts?: ExpertSpec;
  /** Per-tensor transform of a mapped plan (rope permute, norm shift ...). */
  modify?: (item: SourceItem, plan: TensorPlan) => TensorPlan;
  /** GGUF base names that must exist: global ones and per-block ones with {bid}. */
  required: { global: readonly string[]; block: readonly string[] };
  /** GGUF base names llama.cpp keeps in F32 even when 2-D (prepare_tensors: FFN_GATE_INP ...). */
  keepF32?: readonly string[];
}

function blockId(name: string): number | undefined {
  for (const part of name.split(".")) if (/^[0-9]+$/.test(part)) return Number(part);
  return undefined;
}

function unmappable(arch: string, item: SourceItem): ConversionError {
  return new ConversionError(
    `cannot map checkpoint tensor "${item.sourceName}" (shape [${item.info.shape.join(", ")}]) to a ${arch} GGUF tensor; ` +
      `llama.cpp's converter rejects it too ("Can not map tensor"). The checkpoint may be a different ` +
      `architecture than config.json says, or carry adapter/extra weights`,
  );
}

/** Maps one item to a plain-copy plan, or throws naming the tensor. */
export function mapItem(arch: string, names: NameMap, item: SourceItem, hfName = item.name): TensorPlan {
  const m = names.map(hfName);
  if (!m) throw unmappable(arch, item);
  const plan: TensorPlan = { name: m.gguf, sources: [item.sourceName], shape: [...item.info.shape] };
  if (m.bid !== undefined) plan.bid = m.bid;
  return plan;
}

export function planDecoder(o: DecoderPlanOptions): TensorPlan[] {
  const rename = o.rename ?? textModelFilter;
  const plans: TensorPlan[] = [...(o.generated ?? [])];
  const buffers = new Map<number, Map<string, SourceItem>>();
  for (const [sourceName, info] of o.source) {
    const name = rename(sourceName);
    if (name === undefined || IGNORED_SUFFIXES.some((s) => name.endsWith(s))) continue;
    const item: SourceItem = { name, sourceName, info, bid: blockId(name) };
    const handled = o.special?.(item, o.names);
    if (handled) {
      plans.push(...handled);
      continue;
    }
    if (o.experts?.match(name)) {
      if (item.bid === undefined) throw unmappable(o.arch, item);
      const buf = buffers.get(item.bid) ?? new Map<string, SourceItem>();
      buffers.set(item.bid, buf);
      buf.set(name, item);
      if (buf.size >= o.experts.count * o.experts.parts.length) plans.push(...stackExperts(o, item.bid, buf));
      continue;
    }
    const plan = mapItem(o.arch, o.names, item);
    plans.push(o.modify ? o.modify(item, plan) : plan);
  }
  for (const [bid, buf] of buffers) if (buf.size > 0) throw incompleteExperts(o, bid, buf);
  const keep = new Set(o.keepF32 ?? []);
  for (const p of plans) if (keep.has(p.name.replace(/\.(weight|bias)$/, "").replace(/^blk\.\d+\./, "blk.{bid}."))) p.keepF32 = true;
  checkRequired(o, plans);
  return plans;
}

function stackExperts(o: DecoderPlanOptions, bid: number, buf: Map<string, SourceItem>): TensorPlan[] {
  const spec = o.experts!;
  const out: TensorPlan[] = [];
  for (const { part, merged } of spec.parts) {
    const items: SourceItem[] = [];
    for (let xid = 0; xid < spec.count; xid++) {
      const name = spec.expertName(bid, xid, part);
      const item = buf.get(name);
      if (!item) throw incompleteExperts(o, bid, buf);
      items.push(item);
    }
    for (const it of items) buf.delete(it.name);
    const shape = items[0]!.info.shape;
    const odd = items.find((it) => it.info.shape.join() !== shape.join());
    if (odd) {
      throw new ConversionError(
        `expert tensor "${odd.sourceName}" has shape [${odd.info.shape.join(", ")}] but expert 0 has [${shape.join(", ")}]; experts of one layer must match to be stacked`,
      );
    }
    const first = items[0]!;
    const mapped = mapItem(o.arch, o.names, first, merged(bid));
    out.push({ ...mapped, sources: items.map((it) => it.sourceName), shape: [spec.count, ...shape], build: stackTensors, bid });
  }
  return out;
}

function incompleteExperts(o: DecoderPlanOptions, bid: number, buf: Map<string, SourceItem>): ConversionError {
  const spec = o.experts!;
  const missing: string[] = [];
  for (const { part } of spec.parts) {
    for (let xid = 0; xid < spec.count; xid++) {
      const n = spec.expertName(bid, xid, part);
      if (!buf.has(n)) missing.push(n);
    }
  }
  const shown = missing.slice(0, 6).join(", ") + (missing.length > 6 ? `, ... (${missing.length} in all)` : "");
  return new ConversionError(
    `layer ${bid} of this ${o.arch} checkpoint has ${buf.size} of ${spec.count * spec.parts.length} expert tensors; ` +
      `missing: ${shown}. Check that every safetensors shard is present`,
  );
}

function checkRequired(o: DecoderPlanOptions, plans: TensorPlan[]): void {
  const have = new Set(plans.map((p) => p.name));
  const wanted: string[] = [...o.required.global];
  for (let bid = 0; bid < o.blockCount; bid++) for (const b of o.required.block) wanted.push(b.replaceAll("{bid}", String(bid)));
  for (const base of wanted) {
    if (have.has(`${base}.weight`)) continue;
    const bid = blockId(base);
    const expert = o.experts?.parts.find((p) => o.names.map(p.merged(bid ?? 0))?.gguf === `${base}.weight`);
    const hf = expert
      ? `${o.experts!.expertName(bid ?? 0, 0, expert.part)} and the other experts`
      : (o.names.hfNameOf(base) ?? "no known HF name");
    throw new ConversionError(
      `the checkpoint has no tensor for ${base}.weight (HF name ${hf}); llama.cpp cannot load a ${o.arch} model ` +
        `without it. Check that every safetensors shard listed in model.safetensors.index.json is present`,
    );
  }
}
