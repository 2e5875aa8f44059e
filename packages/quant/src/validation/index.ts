// Validation (issue 6): perplexity by llama-perplexity's method, KL divergence in one lockstep
// pass over two models, multiple choice in MMLU's format, and validate() which runs them on an
// original / quantized pair and fills an artifact's manifest.
export { DEFAULT_BATCH, DEFAULT_CTX, type ChunkPlan, planChunks } from "./chunks.js";
export { type KLDivergenceOptions, type KLDivergenceResult, klDivergence } from "./kl-divergence.js";
export { BUILTIN_MMLU } from "./mmlu-builtin.js";
export { MMLU_DATASET, type MMLUQuestionSet, type MMLUSourceOptions, mmluQuestions, parseMMLUDataset } from "./mmlu-source.js";
export {
  type MultipleChoiceOptions,
  type MultipleChoiceQuestion,
  type MultipleChoiceResult,
  loadMultipleChoice,
  mmluPrompt,
  selectQuestions,
  multipleChoiceAccuracy,
} from "./multiple-choice.js";
export { type EvalProgress, type EvalTextOptions, type PerplexityResult, perplexity } from "./perplexity.js";
export {
  DEFAULT_METRICS,
  VALIDATION_METRICS,
  type ValidateOptions,
  type ValidateProgress,
  type ValidationMetric,
  type ValidationReport,
  type ValidationSummary,
  formatValidationReport,
  manifestValidation,
  validate,
  validationSummary,
} from "./validate.js";
