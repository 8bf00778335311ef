-- dataset_stats.lua - long examples and ds:stats() (tests/py/test_dataset_stats.py).
-- arg[1] = model, arg[2] = a JSONL file of {"text": ...} lines, arg[3] = seq,
-- arg[4] = rows per batch (dividing the number of lines). Builds the file
-- under each long-example policy and reports what Python checks against
-- counts of its own (from the tokenizer's ids) as "dstats" events: the stats
-- before and after batches, the split pieces' ids. Here: the checks that
-- need no reference (bad options refused, naming the option; the warning's
-- event once per dataset).
local check = require "check"
local m = bitlab.load_model(arg[1])
local file, S, B = arg[2], math.tointeger(tonumber(arg[3])), math.tointeger(tonumber(arg[4]))

local function report(name, ds, extra)
  local f = {policy = name, stats = ds:stats()}
  for k, v in pairs(extra or {}) do f[k] = v end
  bitlab.event("dstats", f)
end

-- no seq: examples whole, one epoch of batches of length S cuts the long rows
local whole = bitlab.dataset{model = m, file = file}
local n = whole:size()
local whole_lens = {}
for i = 1, n do whole_lens[i] = #whole:example(i) end
report("whole_before", whole, {lens = whole_lens})
for _ = 1, n // B do whole:batch(B, S) end
report("whole_epoch", whole)
whole:batch(B, S) -- more cut rows, no second warning
report("whole_more", whole)

-- each policy at seq = S
for _, policy in ipairs{"truncate", "split", "skip"} do
  local ds = bitlab.dataset{model = m, file = file, seq = S, long = policy}
  local before = ds:stats()
  local lens, pieces = {}, {}
  for i = 1, ds:size() do
    local ids = ds:example(i)
    lens[i] = #ids
    if policy == "split" then pieces[i] = ids end
  end
  check.ok(ds:max_len() <= S, policy .. ": no example is longer than seq")
  local T = ds:max_len()
  for _ = 1, 2 do ds:batch(1, T) end
  report(policy, ds, {before = before, lens = lens, pieces = policy == "split" and pieces or nil,
                      batch_T = T})
  -- an example added later is fitted too, without a second warning
  ds:add_text(string.rep("the model learns from tokens and bits ", 8))
  report(policy .. "_added", ds)
end

-- the default is truncate, stated in the stats; seq alone truncates
local d0 = bitlab.dataset{model = m, text = {"hello world"}}
check.eq(d0:stats().long, "truncate", "the default policy is truncate")
check.eq(d0:stats().seq, nil, "no seq unless given")
check.eq(d0:stats().rows, 0, "no rows served yet")

-- bad values: refused, naming the option
check.raises(function() bitlab.dataset{model = m, text = {"a b"}, long = "chop"} end, "'long'",
  "an unknown policy names the option")
check.raises(function() bitlab.dataset{model = m, text = {"a b"}, long = "chop"} end, '"split"',
  "an unknown policy lists the choices")
check.raises(function() bitlab.dataset{model = m, text = {"a b"}, long = 3} end, "'long'",
  "a policy of the wrong type names the option")
check.raises(function() bitlab.dataset{model = m, text = {"a b"}, long = "split"} end, "'seq'",
  "split without seq asks for seq")
check.raises(function() bitlab.dataset{model = m, text = {"a b"}, long = "skip"} end, "'seq'",
  "skip without seq asks for seq")
check.raises(function() bitlab.dataset{model = m, text = {"a b"}, seq = 1} end, "'seq'",
  "seq below 2 names the option")
check.raises(function() bitlab.dataset{model = m, text = {"a b"}, seq = 2.5} end, "'seq'",
  "a fractional seq names the option")

-- everything skipped: the batch says why there is nothing
local none = bitlab.dataset{model = m, text = {"the model learns from tokens and bits of the teacher"},
                            seq = 2, long = "skip"}
check.eq(none:size(), 0, "every example skipped")
check.raises(function() none:batch(1, 4) end, "skipped", "an empty batch names the skips")
check.done()
