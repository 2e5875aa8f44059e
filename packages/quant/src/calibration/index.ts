// Calibration (issue 6): calibration text, importance matrices computed with the engine by
// llama-imatrix's method, and llama.cpp's imatrix GGUF format.
export { type CalibrateOptions, type Calibration, DEFAULT_CALIBRATION_SAMPLES, IMATRIX_FILE, calibrateCheckpoint } from "./calibrate.js";
export { type ComputeImatrixOptions, type ImatrixEntry, type ImatrixResult, ImatrixCollector, computeImatrix, importanceFromImatrix } from "./imatrix.js";
export { type ImatrixStats, readImatrixStats, writeImatrixGGUF } from "./imatrix-file.js";
export { CHAT_TURN_BYTES, chatTurns, formatAsChat } from "./chat-format.js";
export {
  CALIBRATION_DATASETS,
  CALIBRATION_DATASET_SOURCES,
  type CalibrationText,
  type CalibrationTextInfo,
  type CalibrationTextOptions,
  calibrationText,
} from "./text.js";
