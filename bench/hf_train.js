// HuggingFace tokenizers (npm "tokenizers", its Rust core) training a byte-level BPE,
// timed for bench_tokenizer as the yardstick: node bench/hf_train.js FILE RUNS
// prints {"median_s": ..., "vocab": ...}. Node's bindings train with the default
// BpeTrainer (vocab_size 30000, min_frequency 0): on Tiny Shakespeare it runs until no
// pair is left. TOKENIZERS_PARALLELISM=false makes it single-threaded.
// Install: npm install --prefix build/npm tokenizers (bench_tokenizer sets NODE_PATH to it)
const t = require('tokenizers');
const file = process.argv[2], runs = Number(process.argv[3] || 5);
const times = [];
let vocab = 0;
for (let r = -1; r < runs; r++) {            // r = -1: warm-up
  const tok = new t.Tokenizer(t.BPE.empty());
  tok.setPreTokenizer(t.byteLevelPreTokenizer(false, true));
  const t0 = process.hrtime.bigint();
  tok.train([file]);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r >= 0) times.push(dt);
  vocab = tok.getVocabSize();
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({ median_s: times[times.length >> 1], vocab: vocab }));
