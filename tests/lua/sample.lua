-- sample.lua - bitlab.sample, bitlab.filters and bitlab.teacher_data on the
-- tiny model: options refused by name, greedy rows equal model:generate,
-- seeded samples reproducible across batch sizes, every filter reason, and
-- teacher data → dataset → JSONL → a few bitlab.train steps.
-- bitlab tests/lua/sample.lua -- MODEL TMPDIR
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local m = bitlab.load_model(arg[1])
local tmp = arg[2]

-- options checked, errors naming the option
local P = {"hello world", "the quick brown fox"}
local function s(o) return function() return bitlab.sample(o) end end
check.raises(s{prompts = P}, "option 'model'", "model required")
check.raises(s{model = "x", prompts = P}, "option 'model'", "model must be a Model")
check.raises(s{model = m}, "'prompts'", "prompts or bos required")
check.raises(s{model = m, prompts = P, bos = true}, "'bos = true'", "prompts and bos exclusive")
check.raises(s{model = m, prompts = "hello"}, "option 'prompts'", "prompts must be a list")
check.raises(s{model = m, prompts = {}}, "option 'prompts'", "empty prompt list")
check.raises(s{model = m, prompts = {42}}, "entry 1", "a number is no prompt")
check.raises(s{model = m, prompts = P, temperature = -1}, "option 'temperature'", "negative temperature")
check.raises(s{model = m, prompts = P, top_p = 0}, "option 'top_p'", "top_p 0")
check.raises(s{model = m, prompts = P, top_p = 1.5}, "option 'top_p'", "top_p above 1")
check.raises(s{model = m, prompts = P, batch = 0}, "option 'batch'", "batch 0")
check.raises(s{model = m, prompts = P, n = 0}, "option 'n'", "n 0")
check.raises(s{model = m, prompts = P, max_tokens = 0}, "option 'max_tokens'", "max_tokens 0")
check.raises(s{model = m, prompts = P, max_tokens = 100000}, "option 'max_tokens'", "max_tokens beyond the context")
check.raises(s{model = m, prompts = {string.rep("word ", 300)}, max_tokens = 8}, "context",
  "prompt + max_tokens beyond the context")
check.raises(s{model = m, prompts = P, temprature = 0}, "unknown option 'temprature'", "a misspelt option")

-- greedy: each row is model:generate's answer (batch 1: the same single-row
-- ops, exactly; batch 3 over prompts of different lengths: the batched GEMMs
-- may round differently, tests/c/test_sample.c bounds that, so here all but
-- one row must match)
local prompts = {"hello", "the quick brown fox jumps", "a b c d e f g h i j k l", "one two", "tiny"}
local want = {}
for i, p in ipairs(prompts) do want[i] = m:generate(p, {max_tokens = 12}) end
for _, batch in ipairs{1, 3} do
  local got, st = bitlab.sample{model = m, prompts = prompts, max_tokens = 12, temperature = 0, batch = batch}
  local same = 0
  for i = 1, #prompts do
    if got[i].text == want[i] and got[i].prompt == prompts[i] then same = same + 1 end
  end
  check.ok(#got == #prompts and same >= (batch == 1 and #prompts or #prompts - 1),
    string.format("greedy batch %d: %d of %d rows are model:generate's", batch, same, #prompts))
  check.ok(st.tokens > 0 and st.tokens_per_s > 0 and st.seconds > 0 and st.prompt_tokens > 0,
    "stats: tokens, prompt_tokens, seconds, tokens_per_s")
  local n_tok = 0
  for _, r in ipairs(got) do n_tok = n_tok + r.tokens end
  check.eq(n_tok, st.tokens, "the rows' token counts add up to the stats'")
  check.ok(#got[1].ids == got[1].tokens and type(got[1].stopped) == "boolean", "ids and stopped per row")
end

-- seeded: reproducible, batch-independent, n samples per prompt in order
local o = {model = m, prompts = {"hello", "one two"}, n = 3, max_tokens = 10, temperature = 1.0,
           top_p = 0.9, seed = 5}
local function texts(extra)
  local oo = {}
  for k, v in pairs(o) do oo[k] = v end
  for k, v in pairs(extra or {}) do oo[k] = v end
  local r = bitlab.sample(oo)
  local t = {}
  for i, x in ipairs(r) do t[i] = x.prompt .. "|" .. x.text end
  return t
end
local a, b, c = texts{batch = 4}, texts{batch = 4}, texts{batch = 1}
check.eq(#a, 6, "2 prompts x n = 3 give 6 samples")
check.eq(table.concat(a, "\n"), table.concat(b, "\n"), "same seed, same samples")
local differ = 0
for i = 1, #a do differ = differ + (a[i] == c[i] and 0 or 1) end
check.ok(differ <= 1, string.format("batch 1 and 4 draw the same samples (%d of %d differ)", differ, #a))
check.ok(a[1]:find("^hello|") and a[4]:find("^one two|"), "samples come in prompt order")
local d = texts{seed = 6, batch = 4}
check.ok(table.concat(a, "\n") ~= table.concat(d, "\n"), "another seed, other samples")
local distinct = {}
for i = 1, 3 do distinct[a[i]] = true end
check.ok(next(distinct, next(distinct)) ~= nil, "the n samples of a prompt differ")

local bos = bitlab.sample{model = m, bos = true, n = 3, max_tokens = 6, seed = 2}
check.ok(#bos == 3 and bos[1].prompt == "" and bos[1].tokens >= 0, "bos = true: n rows from the BOS token")

-- the filters, one crafted answer per reason
local F = bitlab.filters
local f = F.new{}
local good = "Paris is the capital of France, a city known for art, food and history."
check.eq(f:check("too short"), "short", "short")
check.eq(f:check(string.rep("word ", 500)), "long", "long")
check.eq(f:check("I'm sorry, but I cannot help with that request today at all."), "refusal", "refusal")
check.eq(f:check(good), nil, "a good answer is kept")
check.eq(f:check("PARIS is  the capital of\nfrance, a city known for art, food and history."),
  "duplicate", "duplicate (case and whitespace ignored)")
check.eq(f:check("the the the the the the the the the the the the the the"), "repetitive", "repetitive")
local fs = F.new{require_stop = true}
check.eq(fs:check(good, false), "truncated", "truncated with require_stop")
check.eq(fs:check(good, true), nil, "an answer ended by a stop token passes require_stop")
check.raises(function() F.new{min_char = 3} end, "unknown option 'min_char'", "filters: misspelt option")
check.raises(function() F.new{min_chars = "3"} end, "option 'min_chars'", "filters: wrong type")

-- teacher data end to end: tiny-model answers (filters relaxed: the random
-- model writes gibberish) → a dataset and a JSONL file → bitlab.train
local TD = bitlab.teacher_data
check.raises(function() TD.build{model = m, prompts = {"a"}, chunks = 2} end, "unknown option 'chunks'",
  "teacher_data: misspelt option")
check.raises(function() TD.build{model = m, prompts = {{role = "user", content = "x"}}} end, "entry 1",
  "teacher_data: prompts are strings")
check.raises(function() TD.build{model = m, prompts = tmp .. "/missing.txt"} end, "option 'prompts'",
  "teacher_data: a missing prompts file is named")
local jsonl = tmp .. "/teacher.jsonl"
local seen = 0
local ds, rep = TD.build{
  model = m, prompts = {"hello", "the quick brown fox", "one two", "hello"}, n = 2, max_tokens = 16,
  temperature = 0.8, seed = 3, batch = 4, chunk = 4, seq = 224,
  filters = {min_chars = 1, min_diversity = 0},
  jsonl = jsonl, on_sample = function() seen = seen + 1 end,
}
local rejected = 0
for _, v in pairs(rep.rejected) do rejected = rejected + v end
check.eq(rep.total, 8, "teacher_data: 4 prompts x n = 2 answers")
check.eq(seen, 8, "on_sample after every answer")
check.eq(rep.kept + rejected, rep.total, "kept + rejected = total")
check.ok(rep.kept >= 1, "some answers kept (" .. rep.kept .. ")")
check.eq(ds:size(), rep.kept, "the dataset holds the kept answers")
local lines = 0
for line in io.lines(jsonl) do
  lines = lines + 1
  check.ok(line:find('^{"messages":%[{"role":"user","content":') ~= nil, "a JSONL chat line")
end
check.eq(lines, rep.kept, "the JSONL file holds the kept answers")
check.ok(io.open(jsonl .. ".tmp") == nil, "no .tmp left behind")
local from_file = bitlab.dataset{model = m, file = jsonl}
check.eq(from_file:size(), rep.kept, "the JSONL reads back as a dataset")

-- (the tiny tokenizer spends ~100 tokens on a chat prompt: seq 224 keeps the answers)
local res = bitlab.train{model = m, data = ds, steps = 3, batch = 2, seq = 224,
                         adapter = {rank = 4, alpha = 8, seed = 1}, lr = 1e-3, knobs = false}
check.eq(res.step, 3, "bitlab.train runs on teacher data")
check.ok(res.last and res.last.total and res.last.total > 0 and res.last.total < math.huge,
  "a finite, positive loss on the answers (" .. tostring(res.last and res.last.total) .. ")")

local bds, brep = TD.build{model = m, bos = true, n = 3, max_tokens = 8, chunk = 2,
                           filters = {min_chars = 0, min_diversity = 0}}
check.eq(brep.total, 3, "teacher_data from BOS: n answers over chunks of 2")
check.eq(bds:size(), brep.kept, "BOS answers become text examples")

local rds, rrep = TD.build{model = m, prompts = {"hello there"}, chat = false, max_tokens = 8, seed = 4,
                           filters = {min_chars = 0, min_diversity = 0}}
local rids = rds:example(1)
local sampled = bitlab.sample{model = m, prompts = {"hello there"}, chat = false, max_tokens = 8, seed = 4}
check.ok(rrep.kept == 1 and #rids == #m:prompt("hello there", {chat = false}) + sampled[1].tokens,
  "chat = false: the example is the raw prompt's ids + the answer's")

check.done()
