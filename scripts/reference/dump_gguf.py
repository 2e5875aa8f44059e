# Summarise a GGUF file: every KV (type, raw value bytes sha256, decoded value when small)
# and every tensor (name, shape, ggml type, byte size, sha256 of its data).
import hashlib, json, struct, sys
sys.path.insert(0, "llama.cpp/gguf-py")
from gguf import GGUFReader

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

def read_value(buf, off, t):
    if t in SCALAR:
        fmt = SCALAR[t]
        n = struct.calcsize(fmt)
        return struct.unpack_from(fmt, buf, off)[0], off + n
    if t == 8:
        (n,) = struct.unpack_from("<Q", buf, off)
        return buf[off + 8: off + 8 + n].decode("utf-8", errors="surrogatepass"), off + 8 + n
    if t == 9:
        (it, cnt) = struct.unpack_from("<IQ", buf, off)
        off += 12
        vals = []
        for _ in range(cnt):
            v, off = read_value(buf, off, it)
            vals.append(v)
        return (it, vals), off
    raise ValueError(f"bad type {t}")

def summarise(path):
    buf = open(path, "rb").read()
    assert buf[:4] == b"GGUF"
    version, n_t, n_kv = struct.unpack_from("<IQQ", buf, 4)
    off = 24
    kv = {}
    full = {}
    for _ in range(n_kv):
        (kl,) = struct.unpack_from("<Q", buf, off)
        key = buf[off + 8: off + 8 + kl].decode()
        off += 8 + kl
        (t,) = struct.unpack_from("<I", buf, off)
        off += 4
        start = off
        val, off = read_value(buf, off, t)
        raw = buf[start:off]
        ent = {"type": t, "sha256": hashlib.sha256(raw).hexdigest()}
        if t == 9:
            ent["itemType"] = val[0]
            ent["length"] = len(val[1])
            if len(val[1]) <= 64:
                ent["value"] = val[1]
            else:
                full[key] = val[1]
        else:
            ent["value"] = val
        kv[key] = ent
    r = GGUFReader(path)
    tensors = []
    for t in r.tensors:
        data = bytes(t.data.tobytes())
        tensors.append({"name": t.name, "shape": [int(x) for x in t.shape], "type": int(t.tensor_type),
                        "nbytes": int(t.n_bytes), "sha256": hashlib.sha256(data).hexdigest()})
    return {"version": version, "fileBytes": len(buf), "kv": kv, "tensors": tensors}, full

if __name__ == "__main__":
    s, full = summarise(sys.argv[1])
    json.dump(s, open(sys.argv[2], "w"), indent=1)
    if len(sys.argv) > 3:
        json.dump(full, open(sys.argv[3], "w"))
