-- torture.lua - the Lua API must not crash the host (driven by
-- tests/py/test_lua_torture.py, one process per group so that a signal is
-- seen as a failure).
--
--   bitlab torture.lua --headless -- MODEL TMP list     prints the groups
--   bitlab torture.lua --headless -- MODEL TMP GROUP    runs one group
--
-- The groups are enumerated at run time: every function of the bitlab
-- module and every method of every userdata type (from getmetatable(obj)),
-- so a new one is covered automatically -- and `list` fails when it has no
-- entry in CASES below. Each case is a valid call; the group calls it
-- again with every argument (and every listed option field) replaced by
-- missing / nil / wrong-typed / NaN / negative / huge (1e300, 2^63, inf,
-- maxinteger) / cyclic and deep tables. Each call must return, or raise a
-- Lua error whose message names the argument ("bad argument #N") or the
-- field; any other message is a failure, a signal or a hang fails the
-- process.
local model_path, tmp, group = arg[1], arg[2], arg[3]
assert(model_path and tmp and group, "usage: torture.lua MODEL TMP list|GROUP")

local m = bitlab.load_model(model_path)
local ds = bitlab.dataset{model = m, text = {"hello world one two three", "four five six seven eight nine"}}
local st = bitlab.student{model = m}
st:add_adapter{rank = 2}
local T = ds:max_len()
local tr = bitlab.trainer{student = st, batch = 1, seq = T}
local b = ds:batch(1)
local kn = bitlab.knob{name = "torture_k", value = 1, min = 0, max = 2}
local trace_path = tmp .. "/torture.trace"
bitlab.trace{model = m, data = ds, k = 2, out = trace_path}
local trace = bitlab.load_trace(trace_path)
local ckpt = tmp .. "/torture.ckpt"
tr:save(ckpt, {step = 0})
local ids = m:encode("hello world")
local corpus_path = tmp .. "/torture_corpus.txt"
do
  local f = assert(io.open(corpus_path, "w"))
  f:write("hello world one two three\n\nfour five six seven eight nine")
  f:close()
end
local cp = bitlab.corpus{model = m, path = corpus_path, seq = 8}

local OBJECTS = {Model = m, Dataset = ds, Batch = b, Student = st, Trainer = tr, Knob = kn, Trace = trace,
                 Corpus = cp}
local KNOWN_TYPES = {}
for name, o in pairs(OBJECTS) do KNOWN_TYPES["bitlab." .. name] = true end

-- the bad values ------------------------------------------------------------
local cyc = {}
cyc.self, cyc[1] = cyc, cyc
local function deep(n)
  local t = {}
  local c = t
  for _ = 1, n do c.x = {} c = c.x end
  return t
end
local function deep_list(n)
  local t = {}
  local c = t
  for _ = 1, n do c[1] = {} c = c[1] end
  return t
end
local BAD = {
  {"nil", nil}, {"true", true}, {"string", "x"}, {"empty table", {}}, {"function", print},
  {"file", io.stdout}, {"other userdata", kn}, {"nan", 0 / 0}, {"-1", -1}, {"-1.5", -1.5},
  {"1e300", 1e300}, {"inf", math.huge}, {"-inf", -math.huge}, {"2^63", 2 ^ 63},
  {"maxinteger", math.maxinteger}, {"mininteger", math.mininteger}, {"cyclic", cyc},
  {"deep 31", deep(31)}, {"deep 40", deep(40)}, {"deep 200", deep(200)}, {"deep list 200", deep_list(200)},
}

-- the cases: name -> {args = function() return {valid args...} end,
-- fields = {[arg index] = {option fields to mutate}}, names = {extra
-- message patterns that count as naming the argument}, self = false when
-- argument 1 is not the object}
local function dir(name) return tmp .. "/" .. name end
local CASES = {
  -- bitlab.*
  ["bitlab.load_model"] = {args = function() return {model_path} end},
  ["bitlab.dataset"] = {args = function() return {{model = m, text = {"a b c"}, seed = 1}} end,
    fields = {[1] = {"model", "chat", "text", "file", "files", "response_only", "template", "seed",
                     "seq", "long"}}},
  ["bitlab.corpus"] = {args = function() return {{model = m, path = corpus_path, seq = 8, seed = 1}} end,
    fields = {[1] = {"model", "path", "paths", "shards", "seq", "seed", "piece_bytes", "queue_tokens"}}},
  ["bitlab.sample"] = {args = function() return {{model = m, prompts = {"hi"}, max_tokens = 2, batch = 1, seed = 1}} end,
    fields = {[1] = {"model", "prompts", "bos", "n", "max_tokens", "temperature", "top_p", "seed",
                     "batch", "chat", "system"}}},
  ["bitlab.student"] = {args = function() return {{model = m, lambda = 1, act_bits = 8}} end,
    fields = {[1] = {"model", "lambda", "act_bits", "subln", "post_attn_norm", "dense"}}},
  ["bitlab.trainer"] = {args = function() return {{student = st, batch = 1, seq = T}} end,
    fields = {[1] = {"student", "batch", "seq", "ce", "kl", "topk", "k", "cos", "mag", "tau", "clip",
                     "lr", "beta1", "beta2", "eps", "weight_decay", "trace", "data", "teacher_cache",
                     "hidden_states", "integer_forward"}}},
  ["bitlab.perplexity"] = {args = function() return {m, ds, 1} end},
  ["bitlab.agreement"] = {args = function() return {st, ds, 1} end},
  ["bitlab.common_prefix"] = {args = function() return {{1, 2}, {1, 3}} end},
  ["bitlab.knob"] = {args = function() return {{name = "torture_new", value = 1, min = 0, max = 2, step = 0.5}} end,
    fields = {[1] = {"name", "value", "min", "max", "step"}}},
  ["bitlab.knobs"] = {args = function() return {} end},
  ["bitlab.poll"] = {args = function() return {1} end},
  ["bitlab.log"] = {args = function() return {{step = 1, loss = 2}} end, fields = {[1] = {"step", "knobs"}}},
  ["bitlab.event"] = {args = function() return {"torture", {x = 1}} end, fields = {[2] = {"x"}}},
  ["bitlab.prompts"] = {args = function() return {{"hello"}} end},
  ["bitlab.info"] = {args = function() return {{model = "m", total_steps = 1}} end,
    fields = {[1] = {"model", "experiment", "backend", "total_steps", "adapters", "rank", "mem"}}},
  ["bitlab.show_generation"] = {args = function() return {{index = 1, prompt = "p", model = m, teacher = ids, student = ids}} end,
    fields = {[1] = {"index", "prompt", "model", "teacher", "student"}}},
  ["bitlab.on_command"] = {args = function() return {{}} end},
  ["bitlab.export"] = {args = function() return {{student = st, out = dir("torture.gguf")}} end,
    fields = {[1] = {"student", "out", "format", "ternary", "embed", "manifest"}}},
  ["bitlab.eval"] = {args = function() return {{student = st, data = ds, prompts = {"hi"}, max_tokens = 2, seq = 16}} end,
    fields = {[1] = {"model", "student", "checkpoint", "data", "prompts", "max_tokens", "seq",
                     "max_examples", "act_bits", "json"}}},
  ["bitlab.trace"] = {args = function() return {{model = m, data = ds, k = 2, out = dir("t2.trace")}} end,
    fields = {[1] = {"model", "data", "k", "out", "tau", "seq", "batch", "hidden"}}},
  ["bitlab.load_trace"] = {args = function() return {trace_path} end},
  ["bitlab.plan"] = {args = function() return {{model = model_path, batch = 1, seq = 16}} end,
    fields = {[1] = {"config", "model", "batch", "seq", "rank", "adapters", "dense", "subln",
                     "post_attn_norm", "act_bits", "topk", "baseline_mib"}}},
  ["bitlab.random"] = {args = function() return {10} end},
  ["bitlab.seed"] = {args = function() return {42} end},
  ["bitlab.clock"] = {args = function() return {} end},
  ["bitlab.rank"] = {args = function() return {} end},
  ["bitlab.world_size"] = {args = function() return {} end},
  ["bitlab.broadcast"] = {args = function() return {{x = 1, s = "a"}} end},
  ["bitlab.device"] = {args = function() return {} end},
  ["bitlab.train"] = {args = function()
      local n = 0 -- stop after one step, whatever steps= says
      return {{model = m, data = ds, steps = 1, knobs = false, adapter = false, student = st,
               progress_every = 100, stop = function() n = n + 1 return n > 1 end}}
    end,
    fields = {[1] = {"model", "data", "steps", "batch", "seq", "micro_batch", "lr", "lambda", "act_bits",
                     "clip", "weight_decay", "beta1", "beta2", "rotate_every", "checkpoint_every",
                     "max_tokens", "progress_every", "topk_k", "instability"}},
    -- a Lua function: its own checks, and the C checks of what it calls
    names = {"bitlab.train", "option '", "attempt to", "bad argument"}},
  -- methods
  ["Model:info"] = {args = function() return {m} end},
  ["Model:encode"] = {args = function() return {m, "hello", true} end},
  ["Model:decode"] = {args = function() return {m, ids, false} end},
  ["Model:prompt"] = {args = function() return {m, "hi", {chat = true, system = "s"}} end,
    fields = {[3] = {"chat", "system"}}},
  ["Model:generate"] = {args = function() return {m, "hi", {max_tokens = 2, system = "s"}} end,
    fields = {[3] = {"max_tokens", "chat", "system"}}},
  ["Model:forward"] = {args = function() return {m, ids} end},
  ["Dataset:size"] = {args = function() return {ds} end},
  ["Dataset:max_len"] = {args = function() return {ds} end},
  ["Dataset:add_chat"] = {args = function() return {ds, {user = "u", assistant = "a"}} end,
    fields = {[2] = {"user", "assistant", "system"}}},
  ["Dataset:add_text"] = {args = function() return {ds, "more text here"} end, names = {"example of"}},
  ["Dataset:add_tokens"] = {args = function() return {ds, ids, 1} end},
  ["Dataset:example"] = {args = function() return {ds, 1} end},
  ["Dataset:position"] = {args = function() return {ds} end},
  ["Dataset:seek"] = {args = function() return {ds, {epoch = 0, pos = 0}} end, fields = {[2] = {"epoch", "pos"}}},
  ["Dataset:batch"] = {args = function() return {ds, 1, T} end},
  ["Dataset:stats"] = {args = function() return {ds} end},
  ["Corpus:batch"] = {args = function() return {cp, 2, 8} end},
  ["Corpus:seq"] = {args = function() return {cp} end},
  ["Corpus:files"] = {args = function() return {cp} end},
  ["Corpus:position"] = {args = function() return {cp} end},
  ["Corpus:seek"] = {args = function() return {cp, {epoch = 0, file = 0, offset = 0, line = 0, consumed = 0}} end,
    fields = {[2] = {"epoch", "file", "offset", "line", "consumed", "seed", "files"}}},
  ["Corpus:stats"] = {args = function() return {cp} end},
  ["Student:add_adapter"] = {args = function() return {st, {rank = 2, alpha = 4, seed = 1}} end,
    fields = {[2] = {"rank", "alpha", "seed"}}},
  ["Student:rotate"] = {args = function() return {st, {rank = 2, alpha = 4, seed = 1}} end,
    fields = {[2] = {"rank", "alpha", "seed"}}},
  ["Student:n_adapters"] = {args = function() return {st} end},
  ["Student:set_lambda"] = {args = function() return {st, 0.5} end},
  ["Student:lambda"] = {args = function() return {st} end},
  ["Student:set_act_bits"] = {args = function() return {st, 8} end},
  ["Student:act_bits"] = {args = function() return {st} end},
  ["Student:lambda_acts"] = {args = function() return {st} end},
  ["Student:generate"] = {args = function() return {st, "hi", {max_tokens = 2}} end,
    fields = {[3] = {"max_tokens", "chat", "system"}}},
  ["Student:forward"] = {args = function() return {st, ids} end},
  ["Student:memory"] = {args = function() return {st} end},
  ["Trainer:step"] = {args = function() return {tr, b, {lr = 1e-3, ce = 1, kl = 0.5, tau = 1}} end,
    fields = {[3] = {"lr", "ce", "kl", "topk", "cos", "mag", "tau"}}},
  ["Trainer:save"] = {args = function() return {tr, dir("s.ckpt"), {a = 1, list = {1, 2}}} end,
    fields = {[3] = {"a", "list"}}},
  ["Trainer:load"] = {args = function() return {tr, ckpt} end},
  ["Trainer:steps"] = {args = function() return {tr} end},
  ["Trainer:memory"] = {args = function() return {tr} end},
  ["Trainer:trace"] = {args = function() return {tr} end},
  ["Knob:get"] = {args = function() return {kn} end},
  ["Knob:set"] = {args = function() return {kn, 1.5} end},
  ["Trace:info"] = {args = function() return {trace} end},
}

-- enumeration -----------------------------------------------------------------
local _ = bitlab.train -- the lazily loaded Lua loop
local function groups()
  local g = {}
  for k, v in pairs(bitlab) do
    if type(v) == "function" then g[#g + 1] = "bitlab." .. k end
  end
  for tname, o in pairs(OBJECTS) do
    local mt = getmetatable(o)
    assert(type(mt) == "table" and mt.__name == "bitlab." .. tname, "no public metatable for " .. tname)
    for _, methods in ipairs{mt.__index, mt.methods} do
      if type(methods) == "table" then
        for k, v in pairs(methods) do
          if type(v) == "function" then g[#g + 1] = tname .. ":" .. k end
        end
      end
    end
  end
  table.sort(g)
  g[#g + 1] = "special" -- the hand-written cases below
  return g
end

local function fn_of(name)
  local t, k = name:match("^(%w+)[:.](.+)$")
  if t == "bitlab" then return bitlab[k], k end
  local mt = getmetatable(OBJECTS[t])
  return (type(mt.__index) == "table" and mt.__index[k]) or (mt.methods and mt.methods[k]), k
end

-- running -------------------------------------------------------------------
local failures, calls = 0, 0
local function fail(msg)
  failures = failures + 1
  print("FAIL " .. msg)
end

local function check_results(what, ...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "userdata" then
      local mt = getmetatable(v)
      local name = type(mt) == "table" and mt.__name or nil
      if name and name:match("^bitlab%.") and not KNOWN_TYPES[name] then
        fail(what .. ": returns a new userdata type " .. name .. ": add it to OBJECTS and CASES")
      end
    end
  end
end

-- Calls fn with args[1..n]; an error must name one of `names`.
-- messages that name the element at fault inside a list argument
local ELEMENT = {"token list entry ", "message ", "a conversation needs", "top-K"}

local function try(what, fn, args, n, names, bad)
  calls = calls + 1
  local res = table.pack(pcall(fn, table.unpack(args, 1, n)))
  if res[1] then
    check_results(what, table.unpack(res, 2, res.n))
    return true
  end
  local msg = tostring(res[2])
  for _, list in ipairs{names, ELEMENT} do
    for _, p in ipairs(list) do
      if msg:find(p, 1, true) then return false end
    end
  end
  -- a path or name that does not exist: the message names the value itself
  if (type(bad) == "string" or type(bad) == "number") and msg:find(tostring(bad) .. ":", 1, true) then
    return false
  end
  fail(string.format("%s: the error does not name the argument: %s", what, msg))
  return false
end

local function run_case(name)
  local case = CASES[name]
  local fn, short = fn_of(name)
  local valid = case.args()
  local n = #valid
  -- the valid call itself must work (else the case table is stale)
  local ok, err = pcall(fn, table.unpack(valid, 1, n))
  if not ok then fail(name .. ": the valid call fails: " .. tostring(err)) end
  local extra = case.names or {}
  for i = 1, n + 1 do
    -- a table argument replaced whole: a message naming one of its fields will do
    local argnames = {"bad argument #" .. i, "bad argument", short, "option '"}
    for _, p in ipairs(extra) do argnames[#argnames + 1] = p end
    -- missing: the call cut before argument i
    if i <= n then try(string.format("%s missing #%d", name, i), fn, case.args(), i - 1, argnames) end
    for _, bad in ipairs(BAD) do
      local args = case.args()
      args[i] = bad[2]
      try(string.format("%s #%d = %s", name, i, bad[1]), fn, args, math.max(n, i), argnames, bad[2])
    end
  end
  for i, fields in pairs(case.fields or {}) do
    for _, f in ipairs(fields) do
      for _, bad in ipairs(BAD) do
        local args = case.args()
        args[i][f] = bad[2]
        local names = {"'" .. f .. "'", f .. "=", f .. " ", " " .. f, "bad argument #" .. i}
        for _, p in ipairs(extra) do names[#names + 1] = p end
        try(string.format("%s #%d.%s = %s", name, i, f, bad[1]), fn, args, n, names, bad[2])
      end
    end
  end
end

local function special()
  -- tostring and the fields of every object, good and bad keys
  for tname, o in pairs(OBJECTS) do
    try(tname .. " tostring", tostring, {o}, 1, {"bad argument"})
    for _, bad in ipairs(BAD) do
      if bad[2] ~= nil then
        try(tname .. "[" .. bad[1] .. "]", function() return o[bad[2]] end, {}, 0,
            {"bad argument", "attempt to index"})
      end
    end
  end
  -- metatables are stand-ins: __gc is out of reach
  for tname, o in pairs(OBJECTS) do
    if rawget(getmetatable(o), "__gc") ~= nil then fail(tname .. ": __gc reachable through getmetatable") end
  end
  -- knob assignment
  for _, bad in ipairs(BAD) do
    try("knob.value = " .. bad[1], function() kn.value = bad[2] end, {}, 0, {"bad argument", "value"})
    try("knob.other = " .. bad[1], function() kn.other = bad[2] end, {}, 0, {"bad argument", "only .value"})
  end
  if kn.value ~= kn.value then fail("a NaN reached the knob") end
  -- generate is bound by the context
  local ctx = 256
  try("generate beyond the context", m.generate, {m, "hi", {max_tokens = ctx}}, 3, {"context", "max_tokens"})
  -- state nested past the limit and cyclic, in every JSON bridge
  for _, v in ipairs{cyc, deep(200), deep_list(200), {f = print}} do
    try("save state", tr.save, {tr, dir("j.ckpt"), v}, 3, {"bad argument #3"})
    try("log record", bitlab.log, {{x = v}}, 1, {"JSON"})
    try("event fields", bitlab.event, {"e", {x = v}}, 2, {"JSON"})
    try("export manifest", bitlab.export, {{student = st, out = dir("j.gguf"), manifest = {x = v}}}, 1, {"JSON"})
  end
  -- tables nested to the limit still round-trip
  local ok = pcall(tr.save, tr, dir("d.ckpt"), deep(60))
  if not ok then fail("state nested 60 deep refused") end
  -- per-call step overrides do not carry over; absurd values never train
  local r = tr:step(b, {lr = 0})
  for _, v in ipairs{1e30, 1e10, math.huge, 0 / 0, -1} do
    try("step lr " .. tostring(v), tr.step, {tr, b, {lr = v}}, 3, {"'lr'"})
  end
  local r2 = tr:step(b, {lr = 0})
  if r2.total ~= r.total then fail("a refused lr changed the weights") end
end

-- main ------------------------------------------------------------------------
if group == "list" then
  for _, g in ipairs(groups()) do
    if g ~= "special" and not CASES[g] then fail(g .. " has no case in tests/lua/torture.lua") end
    print("group " .. g)
  end
elseif group == "special" then
  special()
else
  assert(CASES[group], "no such group " .. group)
  run_case(group)
end
print(string.format("%s: %d calls, %d failure(s)", group, calls, failures))
if failures > 0 then error(failures .. " failure(s)", 0) end
print("all checks passed")
