import { UsageError } from "@llama-pajamas/artifact";

/** A Hugging Face model repository and the revision asked for: `org/name[@revision]`. */
export interface HubModelId {
  /** "org/name" */
  repo: string;
  /** Branch, tag or commit hash; "main" when none was given. */
  revision: string;
}

/** Longest org or repo name the hub accepts (huggingface_hub utils/_validators.py REPO_ID_REGEX). */
const MAX_REPO_PART_CHARS = 96;
/** Longest revision accepted: git refs are short; this only stops absurd input. */
const MAX_REVISION_CHARS = 255;

const REPO_PART = /^[A-Za-z0-9_.-]+$/;
const REVISION = /^[A-Za-z0-9_.\-/]+$/;

/** `org` or `name`: word characters, "-" and "."; no "--" or ".."; no "-"/"." at either end. */
function validRepoPart(part: string): boolean {
  return (
    part.length >= 1 &&
    part.length <= MAX_REPO_PART_CHARS &&
    REPO_PART.test(part) &&
    !/^[.-]|[.-]$/.test(part) &&
    !part.includes("--") &&
    !part.includes("..")
  );
}

/**
 * `org/name` or `org/name@revision` as a hub id; undefined for anything else (a path such as
 * `./x`, `/abs/dir`, `a/b/c`, or a bare `name`, which the hub itself no longer serves).
 * A hub-shaped id with an unusable revision (`org/name@`, `org/name@../x`) is a usage error.
 */
export function parseHubId(spec: string): HubModelId | undefined {
  const at = spec.indexOf("@");
  const repo = at < 0 ? spec : spec.slice(0, at);
  const parts = repo.split("/");
  if (parts.length !== 2 || !parts.every(validRepoPart) || repo.endsWith(".git")) return undefined;
  if (at < 0) return { repo, revision: "main" };
  const revision = spec.slice(at + 1);
  // The revision becomes a path under refs/ in the cache: no empty, "." or ".." segments.
  const segments = revision.split("/");
  if (
    revision.length === 0 ||
    revision.length > MAX_REVISION_CHARS ||
    !REVISION.test(revision) ||
    segments.some((s) => s === "" || s === "." || s === "..")
  ) {
    throw new UsageError(
      `invalid revision ${JSON.stringify(revision)} in ${JSON.stringify(spec)}; ` +
        `write org/name@REVISION with a branch, tag or commit hash (letters, digits, "_", "-", ".", "/")`,
    );
  }
  return { repo, revision };
}

/** The part after the slash: what a local directory of this model would be called. */
export function repoName(repo: string): string {
  return repo.slice(repo.indexOf("/") + 1);
}

/** A full git commit hash, the only revision that never moves. */
export const COMMIT_HASH = /^[0-9a-f]{40}$/;
