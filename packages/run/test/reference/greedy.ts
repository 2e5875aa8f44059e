// Greedy continuations made by llama.cpp itself (built from the llama.cpp source that
// node-llama-cpp 3.21.1 ships, outside this repo) on the pipeline's Q8_0 GGUF of each fixture:
//
//   node packages/quant/dist/cli/main.js convert --model ../shared/fixtures/models/MODEL \
//     --output /tmp/lp-run/MODEL --precision q8_0,f16 --force
//   llama-server -m /tmp/lp-run/MODEL/gguf/MODEL-q8_0.gguf -t 1 -c 256 -fa off --port 18091 -np 1 --no-webui &
//   curl -s localhost:18091/tokenize -d '{"content": PROMPT, "add_special": true}'
//   curl -s localhost:18091/completion -d '{"prompt": PROMPT, "n_predict": 32, "temperature": 0,
//     "top_k": 1, "return_tokens": true, "cache_prompt": false}'
//
// `tokens` and `content` of the completion are `tokens` and `text` here; `promptTokens` is the
// /tokenize answer (BOS added as llama.cpp adds it). top_k 1 makes the sampler chain an argmax.
//
// Flash attention is off on both sides (the tests load with flashAttention: false). With it on,
// llama.cpp's CPU kernel, which accumulates V in F16, gives logits that differ in the fourth
// digit between builds: node-llama-cpp's prebuilt CPU library and a -march=native build of the
// same source disagree at qwen3-tiny's step 28, a near tie (prebuilt: " beginning" 0.1040 >
// " “" 0.1035; native: 0.1029 < 0.1042), so the texts part there. With it off the two builds
// give the same probabilities to six digits (0.103089 vs 0.10309 for " “").

export const LLAMA_GREEDY = {
  model: "llama-tiny",
  /** sha256 of the Q8_0 GGUF the pipeline made when these were recorded. */
  ggufSha256: "8e6171199c79ca2792b505875698732f31775e8cd6a5f9ec4561ebf773d507e7",
  prompt: "Once upon a time",
  promptTokens: [1, 5713, 3714, 264, 727],
  tokens: [28725, 272, 981, 28715, 8078, 28838, 13, 278, 1987, 395, 272, 1348, 1141, 28723, 28705, 415, 981, 28715, 8078, 28838, 349, 1987, 395, 272, 1348, 1141, 28723, 13, 13, 1014, 981, 28715],
  text: ", the “dictionary”\nis called with the same name.  The “dictionary” is called with the same name.\n\nThe “d",
  /** A string inside the text, for the stop-string tests. */
  stop: "dictionary”\nis",
};

export const QWEN_GREEDY = {
  model: "qwen3-tiny",
  /** sha256 of the Q8_0 GGUF the pipeline made when these were recorded. */
  ggufSha256: "3977bb4477956680be0eedc168d2a5856192f166fb9f93fc4c10f1e809697594",
  prompt: "The capital of France is",
  promptTokens: [785, 6722, 315, 9625, 374],
  tokens: [279, 198, 6005, 6818, 287, 3668, 738, 311, 279, 1036, 49, 854, 3668, 738, 315, 1036, 73, 3122, 854, 311, 198, 1371, 1036, 73, 3122, 854, 311, 279, 1036, 73, 3122, 854],
  text: " the\ncorresponding character set to the “R” character set of “junk” to\nbe “junk” to the “junk”",
  /** A string inside the text, for the stop-string tests. */
  stop: "character set",
};
