-- teacher_source.lua - bitlab.dataset{teacher = model, ...}, the teacher-fed
-- data source, on the tiny model (filters relaxed: the random model writes
-- gibberish). Two modes:
--   bitlab tests/lua/teacher_source.lua -- MODEL TMPDIR
--     options refused by name; sampling is lazy (training starts after the
--     first call, not after all prompts were sampled); the examples are
--     build()'s, in order; stats; passes; the JSONL lines (parsed again by
--     test_teacher_source.py); position / seek; a pass that keeps nothing
--   bitlab tests/lua/teacher_source.lua [--resume CKPT] -- MODEL TMPDIR train STEPS
--     the run test_teacher_source.py repeats for resume equality: a
--     checkpoint every 4 steps into TMPDIR/ts.ckpt, the JSONL in TMPDIR
package.path = "tests/lua/?.lua;" .. package.path
local check = require "check"
local m = bitlab.load_model(arg[1])
local tmp = arg[2]

local PROMPTS = {"hello", "the quick brown fox", "one two", "tiny", "a b c", "seven eight",
                 "good morning", "ternary bits"}
local LOOSE = {min_chars = 1, min_diversity = 0}

if arg[3] == "train" then
  -- a shuffled order would not matter: the source serves in production order
  local src = bitlab.dataset{teacher = m, prompts = PROMPTS, n = 2, max_tokens = 10, temperature = 0.9,
                             seed = 7, chunk = 4, batch = 4, filters = LOOSE, jsonl = tmp .. "/ts.jsonl"}
  bitlab.train{
    model = m, data = src, steps = math.tointeger(tonumber(arg[4])), batch = 3, seq = 128,
    adapter = {rank = 4, alpha = 8, seed = 5}, lr = 3e-3, loss = {ce = 1, kl = 1, cos = 0.5, tau = 2},
    checkpoint = tmp .. "/ts.ckpt", checkpoint_every = 4, progress_every = 100,
  }
  return
end

-- ---------------------------------------------------------------------------
-- options refused by name
local function src(o)
  return function() return bitlab.dataset(o) end
end
local base = {teacher = m, prompts = PROMPTS}
local function with(extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra) do o[k] = v end
  return o
end
check.raises(src(with{chunks = 2}), "unknown option 'chunks'", "a misspelt option")
check.raises(src{teacher = "m", prompts = PROMPTS}, "option 'teacher' must be a bitlab.Model", "teacher a string")
check.raises(src{teacher = {}, prompts = PROMPTS}, "option 'teacher' must be a bitlab.Model", "teacher a table")
check.raises(src{teacher = m, prompts = 42}, "option 'prompts' must be a list", "prompts a number")
check.raises(src{teacher = m, prompts = {"a", 3}}, "option 'prompts': entry 2 must be a string", "a number in prompts")
check.raises(src{teacher = m, prompts = {}}, "option 'prompts' is an empty list", "no prompts")
check.raises(src{teacher = m}, "option 'prompts'", "neither prompts nor bos")
check.raises(src{teacher = m, prompts = PROMPTS, bos = true}, "'prompts' or bos = true, not both", "prompts and bos")
check.raises(src{teacher = m, prompts = tmp .. "/missing.txt"}, "option 'prompts': cannot open", "a missing prompts file")
check.raises(src(with{chunk = 0}), "option 'chunk' must be an integer >= 1", "chunk 0")
check.raises(src(with{chunk = 2.5}), "option 'chunk' must be an integer >= 1", "chunk 2.5")
check.raises(src(with{n = 0}), "option 'n'", "n 0")
check.raises(src(with{passes = 0}), "option 'passes'", "passes 0")
check.raises(src(with{top_p = 0}), "option 'top_p'", "top_p 0")
check.raises(src(with{temperature = -1}), "option 'temperature'", "negative temperature")
check.raises(src(with{jsonl = 3}), "option 'jsonl' must be a path", "jsonl a number")
check.raises(src(with{dataset = bitlab.dataset{model = m}}), "unknown option 'dataset'", "no dataset to add to")
check.raises(src(with{model = bitlab.load_model(arg[1])}), "option 'model' must be the teacher's model",
  "model another Model than teacher")
check.raises(src(with{filters = {min_char = 3}}), "unknown option 'min_char'", "filters options checked")
check.ok(tostring(select(2, pcall(src(with{chunk = 0})))):find("teacher_source.lua:%d+:") ~= nil,
  "the error points at the caller's line")

-- ---------------------------------------------------------------------------
-- lazy: training starts after the first call, not after all of them
local sampled = 0 -- answers sampled so far (on_sample runs once per answer)
local O = {teacher = m, prompts = PROMPTS, n = 2, max_tokens = 10, temperature = 0.9, seed = 7, chunk = 4,
           batch = 4, filters = LOOSE, jsonl = tmp .. "/lazy.jsonl",
           on_sample = function() sampled = sampled + 1 end}
local s = bitlab.dataset(O)
check.eq(sampled, 0, "nothing is sampled when the source is made")
check.eq(getmetatable(s).__name, "bitlab.TeacherSource", "a bitlab.TeacherSource")
local at_step = {}
local res = bitlab.train{model = m, data = s, steps = 4, batch = 2, seq = 128, adapter = {rank = 4, alpha = 8, seed = 1},
                         lr = 1e-3, knobs = false, progress_every = 100,
                         on_step = function(step, r) at_step[step] = {sampled = sampled, td = r.teacher_data} end}
check.eq(res.step, 4, "bitlab.train runs on the source")
-- chunk 4 with n = 2: 2 prompts (4 answers) a call; step 1 needs 2 examples
check.eq(at_step[1].sampled, 4, "step 1 ran after one call (4 of 16 answers sampled)")
check.ok(at_step[4].sampled < #PROMPTS * 2, "4 steps of 2 rows need less than a pass (" .. at_step[4].sampled .. " of 16)")
check.ok(res.last and res.last.total > 0 and res.last.total < math.huge, "a finite loss on the teacher's answers")
local td = at_step[4].td
check.ok(td and td.served == 8 and td.kept >= 8 and td.answers == at_step[4].sampled and td.rejected == 0
  and td.teacher_tokens > 0 and td.tokens_per_s > 0 and td.epoch == 0,
  "step records carry teacher_data {served, kept, answers, rejected, teacher_tokens, tokens_per_s, epoch}")

local st = s:stats()
check.eq(st.served, 8, "stats: served")
check.eq(st.kept + st.rejected_total, st.total, "stats: kept + rejected = answers")
check.eq(st.examples, s:size(), "stats: examples held")
check.eq(st.calls, st.total // 4, "stats: calls of 4 answers")
check.ok(st.teacher_seconds > 0 and math.abs(st.tokens_per_s - st.teacher_tokens / st.teacher_seconds) < 1e-9 * st.tokens_per_s,
  "stats: teacher tok/s = teacher tokens / sampling seconds")
check.eq(st.jsonl_lines, st.kept, "stats: one JSONL line per kept example")
check.ok(st.jsonl_seconds >= 0, "stats: the JSONL time is measured")

-- the JSONL: one line per kept example, flushed per call (parsed again in Python)
local lines = {}
for line in io.lines(tmp .. "/lazy.jsonl") do lines[#lines + 1] = line end
check.eq(#lines, st.kept, "the JSONL holds every kept example so far")
check.ok(lines[1]:find('^{"messages":%[{"role":"user","content":"hello"},{"role":"assistant","content":') ~= nil,
  "a JSONL chat line for the first prompt")
check.eq(bitlab.dataset{model = m, file = tmp .. "/lazy.jsonl"}:size(), st.kept, "the JSONL reads back as a dataset")

-- ---------------------------------------------------------------------------
-- the examples are build()'s (one sampler), in production order
local full = {}
for k, v in pairs(O) do full[k] = v end
full.on_sample, full.jsonl, full.teacher = nil, nil, nil
full.model = m
local ds, rep = bitlab.teacher_data.build(full)
check.eq(rep.total, #PROMPTS * 2, "build: a pass of 8 prompts x 2")
local s2 = bitlab.dataset{teacher = m, prompts = PROMPTS, n = 2, max_tokens = 10, temperature = 0.9, seed = 7,
                          chunk = 4, batch = 4, filters = LOOSE}
local b = s2:batch(rep.kept, 128) -- the whole pass
check.eq(s2:stats().total, rep.total, "the source sampled exactly one pass for it")
local same = s2:size() == ds:size()
for i = 1, ds:size() do
  local a, c = table.concat(ds:example(i), ","), table.concat(s2:dataset():example(i), ",")
  same = same and a == c
end
check.ok(same, "the source's examples are build()'s, in the same order")
local arr = b:arrays()
local first = table.concat(table.move(arr.tokens, 1, arr.lens[1], 1, {}), ",")
check.eq(first, table.concat(ds:example(1), ","), "batch rows in production order (row 1 = example 1)")

-- passes: after the last pass, batches go round the kept examples again
local s3 = bitlab.dataset{teacher = m, prompts = {"hello", "one two"}, max_tokens = 8, seed = 2, passes = 1,
                          filters = LOOSE}
local first3 = table.concat(s3:batch(2, 128):arrays().tokens, ",")
local again = table.concat(s3:batch(2, 128):arrays().tokens, ",")
check.eq(s3:stats().calls, 1, "passes = 1: no call after the pass")
check.ok(s3:size() == 2 and again == first3, "passes = 1: the next batch is the first one again")
local s4 = bitlab.dataset{teacher = m, prompts = {"hello", "one two"}, max_tokens = 8, seed = 2, filters = LOOSE}
s4:batch(4, 128)
check.ok(s4:stats().calls == 2 and s4:stats().epoch == 2, "no passes limit: the prompts cycle (2 passes for 4 rows)")
local p1 = s4:dataset():example(1)
local p3 = s4:dataset():example(3)
check.ok(table.concat(p1, ",") ~= table.concat(p3, ","), "the second pass draws other answers (a new seed per call)")

-- max_len: seq when given, else the longest example after the first call
local s5 = bitlab.dataset{teacher = m, prompts = PROMPTS, max_tokens = 6, chunk = 2, filters = LOOSE}
local ml = s5:max_len()
check.ok(s5:stats().calls == 1 and ml == s5:dataset():max_len(), "max_len without seq: the first call's longest")
check.eq(bitlab.dataset{teacher = m, prompts = PROMPTS, seq = 96}:max_len(), 96, "max_len with seq: seq")

-- position / seek
local pos = s:position()
check.ok(pos.served == 8 and type(pos.key) == "string", "position: {served, key}")
local O6 = {}
for k, v in pairs(O) do O6[k] = v end
O6.jsonl = tmp .. "/sought.jsonl" -- lazy.jsonl is s's, still open
local s6 = bitlab.dataset(O6)
s6:seek(pos)
local want = s:batch(2, 128):arrays()
local got = s6:batch(2, 128):arrays()
check.eq(table.concat(got.tokens, ","), table.concat(want.tokens, ","),
  "a fresh source sought to a position serves what the original serves next (regenerated)")
check.raises(function()
  bitlab.dataset{teacher = m, prompts = PROMPTS, seed = 8}:seek(pos)
end, "other teacher-data options", "seek refuses the position of other options")
check.raises(function() s6:seek{epoch = 0, pos = 3} end, "not a teacher source's", "seek refuses a Dataset's position")

-- a pass that keeps nothing is an error, not an endless loop
local picky = bitlab.dataset{teacher = m, prompts = {"hello", "one two"}, max_tokens = 4, filters = {min_chars = 100000}}
check.raises(function() picky:batch(1, 32) end, "a whole pass over the prompts", "filters rejecting everything")

-- from the BOS token
local bs = bitlab.dataset{teacher = m, bos = true, n = 3, max_tokens = 8, chunk = 2, filters = LOOSE}
bs:batch(3, 16)
check.ok(bs:stats().total == 3 and bs:stats().calls == 2, "bos = true: n answers a pass over calls of 2")

check.done()
