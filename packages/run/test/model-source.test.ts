// Manifest and file checks that run before any native code: what a path is, which file a
// backend gets, version requirements, paths that leave the artifact, checksums, backends.
import { cp, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ManifestError, VersionMismatchError } from "@llama-pajamas/artifact";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selectBackend } from "../src/backends/select.js";
import { BackendUnavailableError } from "../src/errors.js";
import { chooseFile, openModelSource, verifyChecksum } from "../src/model-source.js";
import { Runtime } from "../src/runtime.js";
import { RUNTIME_VERSION } from "../src/version.js";
import { convertFixture, makeTempDir, removeTempDir } from "./helpers.js";

let tmp: string;
let artifact: string;
let n = 0;

/** A copy of the llama-tiny artifact whose manifest is changed by `edit`. */
async function editedArtifact(edit: (m: Record<string, any>) => void): Promise<string> {
  const dir = join(tmp, `case-${++n}`);
  await cp(artifact, dir, { recursive: true });
  const path = join(dir, "manifest.json");
  const m = JSON.parse(await readFile(path, "utf8"));
  edit(m);
  await writeFile(path, JSON.stringify(m));
  return dir;
}

beforeAll(async () => {
  tmp = await makeTempDir();
  artifact = (await convertFixture("llama-tiny", tmp, ["q8_0", "f16"])).dir;
});
afterAll(() => removeTempDir(tmp));

describe("artifact directories", () => {
  it("offer their GGUF files to the cpu backend, first listed first, or by --method", async () => {
    const source = await openModelSource(artifact);
    expect(source.kind).toBe("artifact");
    expect(source.formats).toEqual(["gguf"]);
    const backend = await selectBackend("auto", source.formats);
    expect(backend.name).toBe("cpu");
    expect(backend.format).toBe("gguf");
    const first = await chooseFile(source, "gguf");
    expect(first.file).toBe(join(artifact, "gguf", "llama-tiny-q8_0.gguf"));
    expect(first.method).toBe("Q8_0");
    const f16 = await chooseFile(source, "gguf", "f16");
    expect(f16.file).toBe(join(artifact, "gguf", "llama-tiny-f16.gguf"));
    await expect(chooseFile(source, "gguf", "Q4_K_M")).rejects.toThrow(/no gguf file with method Q4_K_M; methods: Q8_0, F16/);
  });

  it("refuse an incompatible runtime_requirements range, naming both versions", async () => {
    const dir = await editedArtifact((m) => (m.runtime_requirements = { "llama-pajamas-run": ">=9.0.0 <10.0.0" }));
    const err = await Runtime.load({ modelPath: dir, backend: "cpu" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VersionMismatchError);
    expect((err as Error).message).toContain(`needs llama-pajamas-run >=9.0.0 <10.0.0, but llama-pajamas-run is ${RUNTIME_VERSION}`);
  });

  it("accept the seed's comma form and ignore other runtimes' entries", async () => {
    const dir = await editedArtifact((m) => (m.runtime_requirements = { "llama-pajamas-run": ">=0.1.0,<1.0.0", "llama-cpp-python": ">=99", "llama-pajamas-run[mlx]": ">=99" }));
    await expect(openModelSource(dir)).resolves.toMatchObject({ kind: "artifact" });
  });

  it("refuse a GGUF format version this runtime does not read", async () => {
    const dir = await editedArtifact((m) => (m.format_versions = { gguf: "4" }));
    const source = await openModelSource(dir);
    const err = await chooseFile(source, "gguf").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VersionMismatchError);
    expect((err as Error).message).toMatch(/format version 4, but llama-pajamas-run 0\.1\.0 reads gguf versions 2, 3/);
  });

  it("refuse format paths outside the directory, by name or by symlink", async () => {
    const up = await editedArtifact((m) => (m.formats[0].path = "../outside.gguf"));
    await expect(openModelSource(up)).rejects.toThrow(ManifestError);
    await expect(openModelSource(up)).rejects.toThrow(/points outside the artifact directory/);

    const linked = await editedArtifact((m) => (m.formats[0].path = "gguf/link.gguf"));
    await writeFile(join(tmp, "outside.gguf"), await readFile(join(artifact, "gguf", "llama-tiny-q8_0.gguf")));
    await symlink(join(tmp, "outside.gguf"), join(linked, "gguf", "link.gguf"));
    const source = await openModelSource(linked);
    await expect(chooseFile(source, "gguf")).rejects.toThrow(/resolves to .*outside the artifact directory/);
  });

  it("say which listed file is missing", async () => {
    const dir = await editedArtifact((m) => (m.formats[0].path = "gguf/gone.gguf"));
    await expect(chooseFile(await openModelSource(dir), "gguf")).rejects.toThrow(/lists gguf\/gone\.gguf, but it cannot be read: it does not exist/);
  });

  it("verify the chosen file's sha256 (--verify) and name both hashes on a mismatch", async () => {
    const good = await chooseFile(await openModelSource(artifact), "gguf");
    await expect(verifyChecksum(good)).resolves.toBeUndefined();
    const dir = await editedArtifact(() => undefined);
    const file = join(dir, "gguf", "llama-tiny-q8_0.gguf");
    const bytes = await readFile(file);
    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(file, bytes);
    const bad = await chooseFile(await openModelSource(dir), "gguf");
    await expect(verifyChecksum(bad)).rejects.toThrow(/sha256 mismatch for .*llama-tiny-q8_0\.gguf: the file hashes to [0-9a-f]{64}, but .*manifest\.json records [0-9a-f]{64}/);
  });
});

describe("bare files and other directories", () => {
  it("find a bare GGUF's checksum in the metadata.json beside it, or say there is none", async () => {
    const inside = await chooseFile(await openModelSource(join(artifact, "gguf", "llama-tiny-f16.gguf")), "gguf");
    expect(inside.method).toBe("F16");
    await expect(verifyChecksum(inside)).resolves.toBeUndefined();
    const alone = join(tmp, "alone.gguf");
    await cp(join(artifact, "gguf", "llama-tiny-f16.gguf"), alone);
    await expect(verifyChecksum(await chooseFile(await openModelSource(alone), "gguf"))).rejects.toThrow(/no sha256 is recorded/);
  });

  it("refuse files that are not GGUF, and GGUF versions llama.cpp dropped", async () => {
    const text = join(tmp, "notes.gguf");
    await writeFile(text, "hello, I am not a model\n");
    await expect(openModelSource(text)).rejects.toThrow(/is not a GGUF file \(it starts with "hell", expected "GGUF"\)/);
    const empty = join(tmp, "empty.gguf");
    await writeFile(empty, "");
    await expect(openModelSource(empty)).rejects.toThrow(/is not a GGUF file \(it is empty/);
    const v1 = join(tmp, "v1.gguf");
    await writeFile(v1, Buffer.from([0x47, 0x47, 0x55, 0x46, 1, 0, 0, 0]));
    await expect(openModelSource(v1)).rejects.toThrow(/GGUF version 1; llama-pajamas-run reads GGUF versions 2, 3/);
  });

  it("refuse a missing path and a directory that is no model", async () => {
    await expect(openModelSource(join(tmp, "nope.gguf"))).rejects.toThrow(/model not found: .*nope\.gguf does not exist/);
    const dir = join(tmp, "just-ggufs");
    await mkdir(dir);
    await writeFile(join(dir, "a.gguf"), "");
    await expect(openModelSource(dir)).rejects.toThrow(/directory without manifest\.json.*\(it holds a\.gguf\)/);
  });
});

describe("backend selection", () => {
  it("says which backends are available when the one asked for is not", async () => {
    const err = await selectBackend("cuda", ["gguf"]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toMatch(/^backend cuda is not available: .*; available backends: cpu$/);
  });

  it("gives --backend mlx one clear 'not available' answer; MLX directories go to llama.cpp through a transcode", async () => {
    await expect(selectBackend("mlx", ["gguf"])).rejects.toThrow(/backend mlx is not available: (MLX runs only on Apple silicon macOS|MLX models are not supported).*available backends: /);
    const mlxDir = join(tmp, "mlx-model");
    await mkdir(mlxDir);
    await writeFile(join(mlxDir, "config.json"), "{}");
    await writeFile(join(mlxDir, "model.safetensors"), "");
    const source = await openModelSource(mlxDir);
    expect(source.kind).toBe("mlx");
    await expect(Runtime.load({ modelPath: mlxDir, backend: "mlx" })).rejects.toThrow(/backend mlx is not available: /);
    // auto: the cpu backend takes it, and the transcode reads it (an empty file is refused clearly)
    await expect(Runtime.load({ modelPath: mlxDir })).rejects.toThrow(/model\.safetensors: file is 0 bytes/);
  });
});
