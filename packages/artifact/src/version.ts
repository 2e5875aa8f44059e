import semver from "semver";
import { VersionMismatchError } from "./errors.js";

/**
 * Requirement ranges in manifests are semver ranges. The seed writes them Python-style
 * (">=0.1.0,<1.0.0"); commas are accepted as "and".
 */
export function normalizeRange(range: string): string {
  return range.replace(/,/g, " ").replace(/\s+/g, " ").trim();
}

export function satisfies(version: string, range: string): boolean {
  const r = semver.validRange(normalizeRange(range));
  if (r === null) return false;
  return semver.satisfies(version, r, { includePrerelease: true });
}

/**
 * Checks one named requirement, e.g. ("llama-pajamas-run", "0.1.0", ">=0.2.0 <1.0.0").
 * Throws VersionMismatchError naming both versions and what to do.
 */
export function checkRequirement(name: string, actual: string, required: string): void {
  if (semver.validRange(normalizeRange(required)) === null) {
    throw new VersionMismatchError(
      `the artifact's requirement for ${name} is not a valid version range: ${JSON.stringify(required)}`,
      { required, actual },
    );
  }
  if (!satisfies(actual, required)) {
    throw new VersionMismatchError(
      `this artifact needs ${name} ${required}, but ${name} is ${actual}; ` +
        `install a matching ${name} or re-create the artifact with this version's pipeline`,
      { required, actual },
    );
  }
}
