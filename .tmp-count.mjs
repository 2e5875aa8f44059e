import { getLlama } from "node-llama-cpp";
import { readFileSync } from "node:fs";
const text = readFileSync("/work/shared/fixtures/text/eval.txt", "utf8");
const hf = JSON.parse(readFileSync("/work/ref/hf-counts.json","utf8"));
const llama = await getLlama({ gpu: false, build: "never" });
for (const p of process.argv.slice(2)) {
  const [file, name] = p.split(":");
  const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
  const t0 = Date.now();
  const toks = model.tokenize(text);
  const ref = hf[name];
  let firstDiff = -1; const f = ref.first64.slice(ref.first64[0]===1?1:0);
  for (let i=0;i<f.length;i++) if (toks[i]!==f[i]) { firstDiff=i; break; }
  console.log(file, toks.length, "hf", ref.noSpecial, ((toks.length-ref.noSpecial)/ref.noSpecial*100).toFixed(4)+"%", "firstDiff", firstDiff, Date.now()-t0, "ms");
  await model.dispose();
}
await llama.dispose();
