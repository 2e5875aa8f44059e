#!/usr/bin/env python3
"""Reference summaries of llama.cpp's own converter for the random-checkpoint presets.

For each preset: make the checkpoint with scripts/make-random-checkpoint.mjs (fixed seed), run
llama.cpp's convert_hf_to_gguf.py with --outtype f32, f16 and q8_0, and record per GGUF the KVs
(order, type, scalar value; tokenizer.* left out) and per tensor the name, ggml ne shape, the
storage type for each outtype and the sha256 of the f32 data. Then config variants (defaults
left to transformers, rope scaling types, Gemma 3 multimodal text_config ...) converted with
--vocab-only, for their KVs. The architecture tests
(packages/quant/test/arch-presets.test.ts) compare against this file.

Needs a Python with torch, transformers, safetensors, sentencepiece and protobuf (the converter's
requirements) and node on PATH:

  python scripts/preset-references.py --out packages/quant/test/arch-presets-ref.json \
      [--seed 7] [--presets mistral,qwen2,qwen3_moe,phi3,gemma3] [--llama-cpp /work/llama.cpp]
"""
import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_TYPES = ["f32", "f16", "q8_0"]
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures", "models")


def _drop(*keys):
    return lambda c: {k: v for k, v in c.items() if k not in keys}


def _set(**kv):
    return lambda c: {**c, **kv}


# Metadata-only variants: (base config: fixture "fx:NAME" or preset "p:NAME", edit, tokenizer source).
# Each is converted with --vocab-only, which runs the same set_gguf_parameters (and AutoConfig
# defaults) as a full conversion.
VARIANTS = {
    "llama_defaults": ("fx:llama-tiny", _drop("head_dim", "num_key_value_heads", "rope_theta", "max_position_embeddings", "rms_norm_eps", "rope_scaling"), "fx:llama-tiny"),
    "llama_linear": ("fx:llama-tiny", _set(rope_scaling={"type": "linear", "factor": 2.0}), "fx:llama-tiny"),
    "llama_yarn": ("fx:llama-tiny", _set(rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024, "beta_fast": 32.0, "beta_slow": 1.0}), "fx:llama-tiny"),
    "mistral_no_head_dim": ("p:mistral", _drop("head_dim"), "fx:llama-tiny"),
    "mixtral_no_head_dim": ("fx:mixtral-tiny", _drop("head_dim"), "fx:llama-tiny"),
    "qwen2_yarn": ("p:qwen2", _set(rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}), "fx:qwen3-tiny"),
    "qwen3_no_head_dim": ("fx:qwen3-tiny", _drop("head_dim"), "fx:qwen3-tiny"),
    "qwen3_moe_no_head_dim": ("p:qwen3_moe", _drop("head_dim"), "fx:qwen3-tiny"),
    "phi3_short": ("p:phi3", _set(rope_scaling=None, max_position_embeddings=4096, sliding_window=2047), "p:phi3"),
    "phi3_bare": ("p:phi3", lambda c: _drop("sliding_window", "original_max_position_embeddings")({**c, "rope_scaling": None}), "p:phi3"),
    "gemma3_linear": ("p:gemma3", _set(rope_scaling={"factor": 8.0, "rope_type": "linear"}, final_logit_softcapping=30.0), "p:gemma3"),
    "gemma3_multimodal": (None, lambda _: {
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "boi_token_index": 255999,
        "eoi_token_index": 256000, "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
        "text_config": {"hidden_size": 256, "intermediate_size": 768, "model_type": "gemma3_text", "num_hidden_layers": 2,
                        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024, "vocab_size": 32000,
                        "head_dim": 64, "num_attention_heads": 4, "num_key_value_heads": 1},
        "vision_config": {"hidden_size": 64, "image_size": 64, "intermediate_size": 128, "model_type": "siglip_vision_model",
                          "num_attention_heads": 2, "num_hidden_layers": 1, "patch_size": 16, "vision_use_head": False},
        "torch_dtype": "bfloat16"}, "p:gemma3"),
}


def summarise(path, gguf):
    r = gguf.GGUFReader(path)
    kv = []
    for field in r.fields.values():
        if field.name.startswith("GGUF."):
            continue
        t = int(field.types[0])
        entry = [field.name, t]
        if t != int(gguf.GGUFValueType.ARRAY):
            v = field.contents()
            entry.append(v)
        kv.append(entry)
    tensors = []
    for t in r.tensors:
        data = bytes(t.data.tobytes())
        tensors.append({"name": t.name, "shape": [int(x) for x in t.shape], "type": int(t.tensor_type),
                        "sha256": hashlib.sha256(data).hexdigest()})
    return kv, tensors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--presets", default="mistral,qwen2,qwen3_moe,phi3,gemma3")
    ap.add_argument("--llama-cpp", default="/work/llama.cpp")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.llama_cpp, "gguf-py"))
    import gguf  # noqa: E402

    result = {"seed": a.seed, "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in a.presets.split(","):
            ckpt = os.path.join(tmp, preset)
            subprocess.run(["node", os.path.join(HERE, "make-random-checkpoint.mjs"), "--preset", preset,
                            "--out", ckpt, "--seed", str(a.seed)], check=True)
            per_type = {}
            for ot in OUT_TYPES:
                out = os.path.join(tmp, f"{preset}-{ot}.gguf")
                subprocess.run([sys.executable, os.path.join(a.llama_cpp, "convert_hf_to_gguf.py"), ckpt,
                                "--outtype", ot, "--outfile", out], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                per_type[ot] = summarise(out, gguf)
                os.remove(out)
            kv, tensors = per_type["f32"]
            for i, t in enumerate(tensors):
                t["types"] = {ot: per_type[ot][1][i]["type"] for ot in OUT_TYPES}
                del t["type"]
            result["presets"][preset] = {"kv": [e for e in kv if not e[0].startswith("tokenizer.")], "tensors": tensors}
            print(f"{preset}: {len(tensors)} tensors", file=sys.stderr)
        result["variants"] = {}
        for name, (base, edit, tok) in VARIANTS.items():
            def src(ref):
                kind, n = ref.split(":")
                return os.path.join(FIXTURES, n) if kind == "fx" else os.path.join(tmp, n)
            config = edit(copy.deepcopy(json.load(open(os.path.join(src(base), "config.json"))) if base else {}))
            d = os.path.join(tmp, "variant-" + name)
            os.makedirs(d)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(config, f, indent=2)
            for fn in ["tokenizer.json", "tokenizer_config.json", "tokenizer.model"]:
                if os.path.exists(os.path.join(src(tok), fn)):
                    with open(os.path.join(src(tok), fn), "rb") as fi, open(os.path.join(d, fn), "wb") as fo:
                        fo.write(fi.read())
            out = os.path.join(tmp, f"variant-{name}.gguf")
            subprocess.run([sys.executable, os.path.join(a.llama_cpp, "convert_hf_to_gguf.py"), d, "--vocab-only",
                            "--outfile", out], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            kv, _ = summarise(out, gguf)
            result["variants"][name] = {"config": config, "kv": [e for e in kv if not e[0].startswith("tokenizer.")]}
            print(f"variant {name}: {len(kv)} KVs", file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
