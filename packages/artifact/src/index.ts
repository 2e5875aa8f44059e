export * from "./errors.js";
export * from "./manifest.js";
export * from "./version.js";
export * from "./cli.js";
export * from "./mlx-digest.js";

/** Version of the artifact contract package; pipeline and runtime record it. */
export const ARTIFACT_CONTRACT_VERSION = "0.1.0";
