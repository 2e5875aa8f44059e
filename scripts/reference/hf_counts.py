# Token counts of eval.txt by the Hugging Face tokenizer (default special tokens), per model.
import json, sys
from transformers import AutoTokenizer
text = open(sys.argv[1], encoding="utf-8").read()
out = {}
for d in sys.argv[3:]:
    tok = AutoTokenizer.from_pretrained(d)
    ids = tok(text)["input_ids"]
    ids_nospecial = tok(text, add_special_tokens=False)["input_ids"]
    out[d.rstrip("/").split("/")[-1]] = {"withSpecial": len(ids), "noSpecial": len(ids_nospecial), "first64": ids[:64]}
json.dump(out, open(sys.argv[2], "w"), indent=1)
