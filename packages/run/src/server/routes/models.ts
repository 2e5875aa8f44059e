// GET /v1/models and /v1/models/{id}: the one loaded model.
import type { RouteContext } from "../app.js";
import { modelNotFound } from "../app.js";

const created = Math.floor(Date.now() / 1000);

function model(ctx: RouteContext) {
  const { runtime } = ctx;
  return {
    id: ctx.modelId,
    object: "model",
    created,
    owned_by: "llama-pajamas",
    // llama-server's extra details, for clients that show them.
    meta: {
      backend: runtime.backend,
      architecture: runtime.info.architecture,
      method: runtime.method ?? null,
      n_ctx: runtime.info.contextSize,
      n_ctx_train: runtime.info.trainContextSize,
      n_embd: runtime.info.embeddingSize,
      n_vocab: runtime.info.vocabularySize,
      n_params: runtime.info.parameterCount,
      size: runtime.info.sizeBytes,
      parallel: runtime.occupancy.parallel,
    },
  };
}

export async function listModels(ctx: RouteContext): Promise<Response> {
  return Response.json({ object: "list", data: [model(ctx)] });
}

export async function getModel(ctx: RouteContext, _request: Request, params: Record<string, string>): Promise<Response> {
  if (params.id !== ctx.modelId) throw modelNotFound(params.id ?? "", ctx.modelId);
  return Response.json(model(ctx));
}
