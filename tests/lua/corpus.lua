-- corpus.lua - drives bitlab.corpus for tests/py/test_corpus.py: reads
-- `batches` packed batches and logs each (its arrays and the position after
-- it) as a "corpus_batch" event; then, on a fresh corpus of the same options,
-- seeks to the position after batch `resume_at` and logs the batches that
-- follow as "corpus_resumed" and its stats as "corpus_resumed_stats"; then
-- the stats, the files and __tostring.
-- Arguments: MODEL key=value... with keys seq, B, batches, seed, piece_bytes,
-- queue_tokens, resume_at, shards (a folder) and path (repeatable).
local m = bitlab.load_model(arg[1])
local o, paths = {model = m}, {}
local n, resume_at, B = 4, nil, 2
for i = 2, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  assert(k, "bad argument " .. arg[i])
  if k == "path" then paths[#paths + 1] = v
  elseif k == "shards" then o.shards = v
  elseif k == "batches" then n = math.tointeger(tonumber(v))
  elseif k == "resume_at" then resume_at = math.tointeger(tonumber(v))
  elseif k == "B" then B = math.tointeger(tonumber(v))
  else o[k] = math.tointeger(tonumber(v)) end
end
if #paths > 0 then o.paths = paths end

local function record(name, i, b, c)
  local a = b:arrays()
  bitlab.event(name, {i = i, tokens = a.tokens, lens = a.lens, mask = a.mask,
                      doc_start = a.doc_start, position = c:position(), B = b.B, T = b.T,
                      packed = b.packed})
end

local c = bitlab.corpus(o)
local positions = {}
for i = 1, n do
  record("corpus_batch", i, c:batch(B), c)
  positions[i] = c:position()
end
bitlab.event("corpus_stats", {stats = c:stats(), files = c:files(), text = tostring(c)})
if resume_at then
  local d = bitlab.corpus(o)
  d:seek(positions[resume_at])
  for i = resume_at + 1, n do record("corpus_resumed", i, d:batch(B), d) end
  bitlab.event("corpus_resumed_stats", {stats = d:stats()})
end
print("corpus.lua done")
