// Per-tensor type choice, ported from llama.cpp src/llama-quant.cpp at the commit
// node-llama-cpp 3.21.1 ships: init_quantize_state_counters, llama_tensor_get_type,
// llama_tensor_get_type_impl and tensor_type_fallback here; the stateless rules
// (tensor_allows_quantization, tensor_get_category, tensor_requires_imatrix,
// llama_ftype_get_default_type) in recipe-rules.ts.
// Structure and branch order follow upstream so that a diff against it stays readable; the
// counters (i_attention_wv, i_ffn_down ...) make the choice depend on the order tensors are
// visited, which is llama_model_loader's weights_map order (block number, then name), not file
// order. The test suite checks this port against libllama's own llama_quant_compute_types.
//
// Pure TypeScript: no native code, so plans and `list-methods` work without the libraries.

import { GGML_TYPE_Q2_0, ggmlTypeName } from "@llama-pajamas/gguf/formats/ggml-type-traits.js";
import { GGMLType, LlamaFtype } from "@llama-pajamas/gguf/formats/gguf-types.js";
import {
  blck,
  blockIndex,
  ftypeDefaultType,
  isAttnV,
  isLlmType70B,
  isQuantizedType,
  isSet,
  LLAMA_FTYPE_MOSTLY_MXFP4_MOE,
  LLAMA_FTYPE_MOSTLY_Q2_0,
  LLAMA_FTYPE_MOSTLY_TQ1_0,
  LLAMA_FTYPE_MOSTLY_TQ2_0,
  tensorAllowsQuantization,
  tensorCategory,
  tensorRequiresImatrix,
  weightNameCompare,
  type TensorCategory,
} from "./recipe-rules.js";

export {
  blockIndex,
  ftypeDefaultType,
  isLlmType70B,
  isQuantizedType,
  LLAMA_FTYPE_MOSTLY_MXFP4_MOE,
  LLAMA_FTYPE_MOSTLY_Q1_0,
  LLAMA_FTYPE_MOSTLY_Q2_0,
  LLAMA_FTYPE_MOSTLY_TQ1_0,
  LLAMA_FTYPE_MOSTLY_TQ2_0,
  tensorAllowsQuantization,
  tensorCategory,
  tensorRequiresImatrix,
  type TensorCategory,
} from "./recipe-rules.js";

/** What llama-quant.cpp reads from the model (llama_hparams, llama_model::type/arch). */
export interface RecipeModel {
  /** general.architecture: "llama", "qwen3moe", "falcon" ... */
  arch: string;
  /** hparams.n_layer_all (<arch>.block_count). */
  blockCount: number;
  /** hparams.n_head(0) / n_head_kv(0): n_gqa() = headCount / headCountKv. */
  headCount: number;
  headCountKv: number;
  /** hparams.n_expert; 0 or undefined for dense models. */
  expertCount?: number;
  /** model.type == LLM_TYPE_70B; derived with isLlmType70B when left out. */
  llmType70B?: boolean;
}

export interface RecipeTensor {
  /** GGUF name, e.g. "blk.0.attn_q.weight". */
  name: string;
  /** ggml order: ne[0] is the row length. */
  ne: readonly number[];
  /** The type the tensor has in the input GGUF (kept when it is not quantized). */
  type: GGMLType | number;
}

export interface TensorTypeOverride {
  /** Searched in the tensor name, like std::regex_search in llama-quant.cpp. */
  pattern: RegExp | string;
  type: GGMLType | number;
}

export interface RecipeOptions {
  ftype: LlamaFtype | number;
  /** In file order. */
  tensors: readonly RecipeTensor[];
  model: RecipeModel;
  /** An importance matrix with at least one entry is given (quantize_state_impl::has_imatrix). */
  haveImatrix?: boolean;
  /** --pure: every quantized tensor gets the default type. */
  pure?: boolean;
  /** false for --leave-output-tensor. */
  quantizeOutputTensor?: boolean;
  outputTensorType?: GGMLType | number;
  tokenEmbeddingType?: GGMLType | number;
  /** --tensor-type name=type, first match wins. */
  tensorTypeOverrides?: readonly TensorTypeOverride[];
}

export interface TensorDecision {
  name: string;
  type: GGMLType | number;
  category: TensorCategory;
  /** tensor_allows_quantization. */
  allowsQuantization: boolean;
  /** The shape forced a fallback type (counted in nFallback). */
  fallback: boolean;
  /** tensor_requires_imatrix for the chosen type: quantizing fails without importance data. */
  requiresImatrix: boolean;
}

export interface RecipePlan {
  /** One per input tensor, in input order. */
  tensors: TensorDecision[];
  /** quantize_state_impl::n_fallback. */
  nFallback: number;
  /** Input indices in the order llama_model_quantize visits (and writes) the tensors. */
  order: number[];
  /** Some tensor needs an importance matrix (llama-quantize refuses to run without one). */
  requiresImatrix: boolean;
}

/** quantize_state_impl: the counters the choice depends on. */
interface QuantizeState {
  nAttentionWv: number;
  nFfnDown: number;
  nFfnGate: number;
  nFfnUp: number;
  iAttentionWv: number;
  iFfnDown: number;
  iFfnGate: number;
  iFfnUp: number;
  nFallback: number;
  hasImatrix: boolean;
  hasTiedEmbeddings: boolean;
}

/** tensor_type_fallback: a type whose block divides ne[0], or F16. */
function tensorTypeFallback(qs: QuantizeState, ne0: number, target: number): { type: number; fallback: boolean } {
  const qk = blck(target);
  if (ne0 % qk === 0) return { type: target, fallback: false };
  ++qs.nFallback;
  let ret: number;
  switch (target) {
    case GGMLType.IQ1_S: case GGMLType.IQ1_M: case GGMLType.IQ2_XXS: case GGMLType.IQ2_XS:
    case GGMLType.IQ2_S: case GGMLType.IQ3_XXS: case GGMLType.IQ3_S: case GGMLType.IQ4_XS:
      ret = GGMLType.IQ4_NL; break;
    case GGML_TYPE_Q2_0: case GGMLType.Q2_K: case GGMLType.Q3_K: case GGMLType.TQ1_0: case GGMLType.TQ2_0:
      ret = GGMLType.Q4_0; break;
    case GGMLType.Q4_K: ret = GGMLType.Q5_0; break;
    case GGMLType.Q5_K: ret = GGMLType.Q5_1; break;
    case GGMLType.Q6_K: ret = GGMLType.Q8_0; break;
    default:
      // a 32-block type has nothing smaller to demote to; the check below makes it F16
      if (qk <= 32) { ret = target; break; }
      throw new RangeError(`no tensor type fallback is defined for type ${ggmlTypeName(target)}`);
  }
  // the fallback still does not fit (ne[0] not a multiple of 32): F16
  if (ne0 % blck(ret) !== 0) ret = GGMLType.F16;
  return { type: ret, fallback: true };
}

// use_more_bits in llama_tensor_get_type_impl; C integer division
const div = (a: number, b: number) => Math.trunc(a / b);
function useMoreBits(i: number, n: number): boolean {
  return i < div(n, 8) || i >= div(7 * n, 8) || (i - div(n, 8)) % 3 === 2;
}

interface ImplContext {
  qs: QuantizeState;
  model: RecipeModel;
  outputTensorType: number | undefined;
  tokenEmbeddingType: number | undefined;
}

/** llama_tensor_get_type_impl: the per-ftype mixture rules. */
function tensorGetTypeImpl(
  c: ImplContext, newType: number, name: string, ne: readonly number[], ftype: number, category: TensorCategory,
): number {
  const { qs, model } = c;
  const F = LlamaFtype;
  const T = GGMLType;
  const arch = model.arch;
  const nExpertHp = model.expertCount ?? 0;
  const nExpert = Math.max(1, nExpertHp);
  const nGqa = model.headCountKv === 0 ? 0 : div(model.headCount, model.headCountKv);
  const is70B = model.llmType70B ?? isLlmType70B(model);
  const layerInfo = (iLayer: number, nLayer: number): [number, number] => {
    if (nExpert > 1) {
      // experts are not consecutive in Mixtral files: the layer comes from the name
      const il = blockIndex(name);
      if (il === undefined) throw new RangeError(`Failed to determine layer for tensor ${name}`);
      if (il < 0 || il >= nLayer) throw new RangeError(`Bad layer ${il} for tensor ${name}. Must be in [0, ${nLayer})`);
      return [il, nLayer];
    }
    return [iLayer, nLayer];
  };
  const iqLow = (ft: number) =>
    ft === F.MOSTLY_IQ2_XXS || ft === F.MOSTLY_IQ2_XS || ft === F.MOSTLY_IQ1_S ||
    ft === F.MOSTLY_IQ2_S || ft === F.MOSTLY_IQ2_M || ft === F.MOSTLY_IQ1_M;

  // tied embeddings: token_embd is quantized like the output tensor
  if (category === "OUTPUT" || (qs.hasTiedEmbeddings && category === "TOKEN_EMBD")) {
    if (isSet(c.outputTensorType)) {
      newType = c.outputTensorType;
    } else {
      const nx = ne[0] ?? 1;
      const qk = blck(newType);
      if (ftype === LLAMA_FTYPE_MOSTLY_MXFP4_MOE) newType = T.Q8_0;
      else if (arch === "falcon" || nx % qk !== 0) newType = T.Q8_0;
      else if (ftype === F.MOSTLY_IQ2_XXS || ftype === F.MOSTLY_IQ2_XS || ftype === F.MOSTLY_IQ3_XXS ||
               ftype === F.MOSTLY_IQ1_S || ftype === F.MOSTLY_IQ2_S || ftype === F.MOSTLY_IQ2_M ||
               ftype === F.MOSTLY_IQ1_M) newType = T.Q5_K;
      else if (newType !== T.Q8_0) newType = T.Q6_K;
    }
  } else if (ftype === LLAMA_FTYPE_MOSTLY_MXFP4_MOE) {
    // MoE tensors -> MXFP4, other tensors -> Q8_0; bailingmoe3's 3-D MLA projections stay Q8_0
    const isBailingExpert = arch === "bailingmoe3" && (category === "FFN_UP" || category === "FFN_GATE" || category === "FFN_DOWN");
    newType = (ne[2] ?? 1) > 1 && (arch !== "bailingmoe3" || isBailingExpert) ? T.MXFP4 : T.Q8_0;
  } else if (category === "TOKEN_EMBD") {
    if (isSet(c.tokenEmbeddingType)) newType = c.tokenEmbeddingType;
    else if (ftype === F.MOSTLY_IQ2_XXS || ftype === F.MOSTLY_IQ2_XS || ftype === F.MOSTLY_IQ1_S || ftype === F.MOSTLY_IQ1_M) newType = T.Q2_K;
    else if (ftype === F.MOSTLY_IQ2_S || ftype === F.MOSTLY_IQ2_M) newType = T.IQ3_S;
    else if (ftype === F.MOSTLY_IQ3_XXS) newType = T.IQ3_S;
    else if (ftype === LLAMA_FTYPE_MOSTLY_TQ1_0 || ftype === LLAMA_FTYPE_MOSTLY_TQ2_0 || ftype === LLAMA_FTYPE_MOSTLY_Q2_0) newType = T.Q4_K;
  } else if (iqLow(ftype)) {
    const iq2sm = ftype === F.MOSTLY_IQ2_S || ftype === F.MOSTLY_IQ2_M;
    if (isAttnV(category)) {
      if (nGqa >= 4 || nExpertHp >= 4) newType = T.Q4_K;
      else newType = iq2sm ? T.IQ3_S : T.Q2_K;
      ++qs.iAttentionWv;
    } else if (nExpertHp === 8 && category === "ATTENTION_K") {
      newType = T.Q4_K;
    } else if (category === "FFN_DOWN") {
      if (qs.iFfnDown < div(qs.nFfnDown, 8)) newType = iq2sm ? T.IQ3_S : T.Q2_K;
      ++qs.iFfnDown;
    } else if (category === "ATTENTION_OUTPUT") {
      if (nExpertHp === 8) newType = T.Q5_K;
      else if (ftype === F.MOSTLY_IQ1_S || ftype === F.MOSTLY_IQ1_M) newType = T.IQ2_XXS;
      else if (iq2sm) newType = T.IQ3_S;
    }
  } else if (isAttnV(category)) {
    if (ftype === F.MOSTLY_Q2_K) newType = nGqa >= 4 ? T.Q4_K : T.Q3_K;
    else if (ftype === F.MOSTLY_Q2_K_S && nGqa >= 4) newType = T.Q4_K;
    else if (ftype === F.MOSTLY_IQ3_XXS) newType = nGqa >= 4 ? T.Q4_K : !qs.hasImatrix ? T.IQ3_S : T.IQ3_XXS;
    else if ((ftype === F.MOSTLY_IQ3_XS || ftype === F.MOSTLY_IQ3_S) && nGqa >= 4) newType = T.Q4_K;
    else if (ftype === F.MOSTLY_IQ3_M) newType = T.Q4_K;
    else if (ftype === F.MOSTLY_Q3_K_M) newType = qs.iAttentionWv < 2 ? T.Q5_K : T.Q4_K;
    else if (ftype === F.MOSTLY_Q3_K_L) newType = T.Q5_K;
    else if ((ftype === F.MOSTLY_IQ4_NL || ftype === F.MOSTLY_IQ4_XS) && nGqa >= 4) newType = T.Q5_K;
    else if ((ftype === F.MOSTLY_Q4_K_M || ftype === F.MOSTLY_Q5_K_M) && useMoreBits(qs.iAttentionWv, qs.nAttentionWv)) newType = T.Q6_K;
    else if (ftype === F.MOSTLY_Q4_K_S && qs.iAttentionWv < 4) newType = T.Q5_K;
    // 70B: 8 heads share attn_v, which is 8x smaller than attn_q; more bits cost little
    if (is70B && (newType === T.Q3_K || newType === T.Q4_K)) newType = T.Q5_K;
    if (nExpertHp === 8) newType = T.Q8_0;
    ++qs.iAttentionWv;
  } else if (category === "ATTENTION_K") {
    if (nExpertHp === 8) newType = T.Q8_0;
    else if (ftype === F.MOSTLY_IQ3_XS) newType = T.IQ3_XXS;
    else if (ftype === F.MOSTLY_IQ3_XXS) newType = T.IQ2_S;
  } else if (category === "ATTENTION_Q") {
    if (ftype === F.MOSTLY_IQ3_XS) newType = T.IQ3_XXS;
    else if (ftype === F.MOSTLY_IQ3_XXS) newType = T.IQ2_S;
  } else if (category === "FFN_DOWN") {
    const [iLayer, nLayer] = layerInfo(qs.iFfnDown, qs.nFfnDown);
    if (ftype === F.MOSTLY_Q2_K) newType = T.Q3_K;
    else if (ftype === F.MOSTLY_Q2_K_S) {
      if (iLayer < div(nLayer, 8)) newType = T.Q4_K;
    } else if (ftype === F.MOSTLY_IQ3_XXS && !qs.hasImatrix) {
      newType = iLayer < div(nLayer, 8) ? T.Q4_K : T.Q3_K;
    } else if (ftype === F.MOSTLY_Q3_K_M) {
      newType = iLayer < div(nLayer, 16) ? T.Q5_K
        : arch !== "falcon" || useMoreBits(iLayer, nLayer) ? T.Q4_K : T.Q3_K;
    } else if (ftype === F.MOSTLY_IQ3_M && (iLayer < div(nLayer, 8) || (nExpertHp === 8 && useMoreBits(iLayer, nLayer)))) {
      newType = T.Q4_K;
    } else if (ftype === F.MOSTLY_Q3_K_L) {
      newType = arch === "falcon" ? T.Q4_K : T.Q5_K;
    } else if (ftype === F.MOSTLY_Q4_K_M) {
      if (arch === "falcon") {
        newType = iLayer < div(nLayer, 16) ? T.Q6_K : useMoreBits(iLayer, nLayer) ? T.Q5_K : T.Q4_K;
      } else if (useMoreBits(iLayer, nLayer)) newType = T.Q6_K;
    } else if (iLayer < div(nLayer, 8) && (ftype === F.MOSTLY_IQ4_NL || ftype === F.MOSTLY_IQ4_XS) && !qs.hasImatrix) {
      newType = T.Q5_K;
    } else if (ftype === F.MOSTLY_Q5_K_M && useMoreBits(iLayer, nLayer)) newType = T.Q6_K;
    else if (ftype === F.MOSTLY_Q4_K_S && arch !== "falcon" && iLayer < div(nLayer, 8)) newType = T.Q5_K;
    else if ((ftype === F.MOSTLY_Q4_0 || ftype === F.MOSTLY_Q5_0) && qs.hasImatrix && iLayer < div(nLayer, 8)) {
      // first ffn_down layers can go wrong even with an imatrix; only with one, so that a run
      // without keeps giving the old result
      newType = ftype === F.MOSTLY_Q4_0 ? T.Q4_1 : T.Q5_1;
    }
    ++qs.iFfnDown;
  } else if (category === "ATTENTION_OUTPUT") {
    if (arch !== "falcon") {
      if (nExpertHp === 8) {
        if (ftype === F.MOSTLY_Q2_K || ftype === F.MOSTLY_IQ3_XS || ftype === F.MOSTLY_IQ3_XXS ||
            ftype === F.MOSTLY_Q3_K_S || ftype === F.MOSTLY_Q3_K_M || ftype === F.MOSTLY_IQ4_NL ||
            ftype === F.MOSTLY_Q4_K_S || ftype === F.MOSTLY_Q4_K_M || ftype === F.MOSTLY_IQ3_S ||
            ftype === F.MOSTLY_IQ3_M || ftype === F.MOSTLY_IQ4_XS) newType = T.Q5_K;
      } else {
        if (ftype === F.MOSTLY_Q2_K) newType = T.Q3_K;
        else if (ftype === F.MOSTLY_IQ3_XXS) newType = T.IQ3_S;
        else if (ftype === F.MOSTLY_Q3_K_M) newType = T.Q4_K;
        else if (ftype === F.MOSTLY_Q3_K_L) newType = T.Q5_K;
        else if (ftype === F.MOSTLY_IQ3_M) newType = T.Q4_K;
      }
    } else if (ftype === F.MOSTLY_Q3_K_L) newType = T.Q4_K;
  } else if (category === "ATTENTION_QKV") {
    if (ftype === F.MOSTLY_Q3_K_M || ftype === F.MOSTLY_Q3_K_L || ftype === F.MOSTLY_IQ3_M) newType = T.Q4_K;
    else if (ftype === F.MOSTLY_Q4_K_M) newType = T.Q5_K;
    else if (ftype === F.MOSTLY_Q5_K_M) newType = T.Q6_K;
  } else if (category === "FFN_GATE" || category === "FFN_UP") {
    const up = category === "FFN_UP";
    const [iLayer, nLayer] = layerInfo(up ? qs.iFfnUp : qs.iFfnGate, up ? qs.nFfnUp : qs.nFfnGate);
    if (ftype === F.MOSTLY_IQ3_XS && iLayer >= div(nLayer, 8) && iLayer < div(7 * nLayer, 8)) newType = T.IQ3_XXS;
    if (up) ++qs.iFfnUp;
    else ++qs.iFfnGate;
  }
  return newType;
}

function regexFor(p: RegExp | string): RegExp {
  return typeof p === "string" ? new RegExp(p) : p;
}

/**
 * The types llama_model_quantize would give every tensor: the preliminary loop of
 * llama_model_quantize_impl (init_quantize_state_counters, then llama_tensor_get_type for
 * each tensor in weights_map order).
 */
export function planTensorTypes(opts: RecipeOptions): RecipePlan {
  const ftype = opts.ftype;
  const defaultType = ftypeDefaultType(ftype);
  if (defaultType === undefined) throw new RangeError(`invalid output file type ${ftype}`);
  const names = new Set<string>();
  for (const t of opts.tensors) {
    if (names.has(t.name)) throw new RangeError(`duplicate tensor name ${t.name}`);
    names.add(t.name);
  }
  const order = opts.tensors.map((_, i) => i).sort((a, b) => weightNameCompare(opts.tensors[a]!.name, opts.tensors[b]!.name));

  // init_quantize_state_counters
  const qs: QuantizeState = {
    nAttentionWv: 0, nFfnDown: 0, nFfnGate: 0, nFfnUp: 0,
    iAttentionWv: 0, iFfnDown: 0, iFfnGate: 0, iFfnUp: 0,
    nFallback: 0, hasImatrix: opts.haveImatrix === true, hasTiedEmbeddings: true,
  };
  const categories = opts.tensors.map((t) => tensorCategory(t.name));
  for (const c of categories) {
    if (isAttnV(c)) ++qs.nAttentionWv;
    if (c === "OUTPUT") qs.hasTiedEmbeddings = false;
  }
  qs.nFfnDown = qs.nFfnGate = qs.nFfnUp = opts.model.blockCount;

  const patterns = (opts.tensorTypeOverrides ?? []).map((o) => ({ re: regexFor(o.pattern), type: o.type }));
  const ctx: ImplContext = { qs, model: opts.model, outputTensorType: opts.outputTensorType, tokenEmbeddingType: opts.tokenEmbeddingType };
  const decisions: TensorDecision[] = new Array(opts.tensors.length);
  for (const i of order) {
    const t = opts.tensors[i]!;
    const category = categories[i]!;
    const allows = tensorAllowsQuantization(t.name, t.ne, opts);
    let type: number = t.type;
    let fallback = false;
    // llama_tensor_get_type
    if (allows) {
      if (isSet(opts.tokenEmbeddingType) && category === "TOKEN_EMBD" &&
          !(t.name === "per_layer_token_embd.weight" && patterns.some((p) => p.re.test(t.name)))) {
        type = opts.tokenEmbeddingType;
      } else if (isSet(opts.outputTensorType) && category === "OUTPUT") {
        type = opts.outputTensorType;
      } else {
        type = defaultType;
        if (isQuantizedType(defaultType)) {
          const manual = patterns.find((p) => p.re.test(t.name));
          if (manual) type = manual.type;
          else if (!opts.pure) type = tensorGetTypeImpl(ctx, type, t.name, t.ne, ftype, category);
          const fb = tensorTypeFallback(qs, t.ne[0] ?? 1, type);
          type = fb.type;
          fallback = fb.fallback;
        }
      }
    }
    decisions[i] = {
      name: t.name,
      type,
      category,
      allowsQuantization: allows,
      fallback,
      requiresImatrix: tensorRequiresImatrix(t.name, type, ftype),
    };
  }
  return {
    tensors: decisions,
    nFallback: qs.nFallback,
    order,
    requiresImatrix: decisions.some((d) => d.allowsQuantization && d.requiresImatrix),
  };
}

/** The type of every tensor, in input order (see planTensorTypes). */
export function chooseTensorTypes(opts: RecipeOptions): GGMLType[] {
  return planTensorTypes(opts).tensors.map((d) => d.type as GGMLType);
}

/** (tensor name, block index, ne) -> type: the quant policy as a predicate. */
export type QuantPredicate = (name: string, bid: number | undefined, ne: readonly number[]) => GGMLType;

/**
 * The recipe as a predicate, in the style of mlx-lm's mixed_quant_predicate_builder. The
 * llama.cpp mixtures count attn_v / ffn_down tensors across the whole model, so the
 * predicate is built from the full tensor list and answers for those tensors only.
 */
export function recipePredicate(opts: RecipeOptions): QuantPredicate {
  const plan = planTensorTypes(opts);
  const byName = new Map(opts.tensors.map((t, i) => [t.name, { t, type: plan.tensors[i]!.type }]));
  return (name, bid, ne) => {
    const hit = byName.get(name);
    if (!hit) throw new RangeError(`tensor ${name} was not in the list the recipe was built from`);
    if (bid !== undefined && blockIndex(name) !== bid) throw new RangeError(`tensor ${name} is not in block ${bid}`);
    if (hit.t.ne.length !== ne.length || hit.t.ne.some((d, k) => d !== ne[k])) {
      throw new RangeError(`tensor ${name} has ne [${ne.join(", ")}], the recipe saw [${hit.t.ne.join(", ")}]`);
    }
    return hit.type as GGMLType;
  };
}
