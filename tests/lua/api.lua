-- api.lua - every primitive of the bitlab module on a tiny random model.
-- bitlab tests/lua/api.lua -- MODEL TMPDIR
local check = require "check"
local path, tmp = arg[1], arg[2]

-- model ----------------------------------------------------------------------
local m = bitlab.load_model(path)
check.ok(tostring(m):find("bitlab.Model", 1, true), "Model __tostring")
local info = m:info()
check.ok(info.n_layers == 2 and info.dim == 64 and info.vocab_size > 0, "model info")
check.ok(#info.stop_tokens >= 1, "model stop tokens")
check.raises(function() bitlab.load_model(tmp .. "/absent.gguf") end, "absent.gguf", "load error names the file")
local ids = m:encode("hello world")
check.eq(m:decode(ids), "hello world", "encode/decode round trip")
local p = m:prompt("hi")
check.ok(#p > #m:encode("hi"), "prompt wraps in the chat template")
check.eq(#m:prompt("hi", {chat = false}), #m:encode("hi", true), "chat=false encodes raw")
local text, gen = m:generate(p, {max_tokens = 6})
check.ok(type(text) == "string" and #gen <= 6, "teacher generate")
local am, nll = m:forward(ids)
check.ok(#am == #ids and nll > 0, "teacher forward: argmax per position and NLL")
check.raises(function() m:forward({1e9}) end, "not an id", "forward rejects bad ids")

-- datasets -------------------------------------------------------------------
local ds = bitlab.dataset{model = m, chat = {{user = "hi", assistant = "hello there"},
                                             {{role = "user", content = "a"}, {role = "assistant", content = "b c"},
                                              {role = "user", content = "d"}, {role = "assistant", content = "e f"}}},
                          text = {"just some text"}}
check.eq(ds:size(), 3, "dataset from inline chat and text")
local e1, t1 = ds:example(1)
local n_t = 0
for _, t in ipairs(t1) do n_t = n_t + t end
check.ok(n_t > 0 and n_t < #e1, "response-only targets cover part of a chat example")
check.eq(t1[1], 0, "prompt tokens are not targets")
local e3, t3 = ds:example(3)
local all = true
for _, t in ipairs(t3) do all = all and t == 1 end
check.ok(all, "plain text: every token is a target")
local dsa = bitlab.dataset{model = m, response_only = false, chat = {{user = "hi", assistant = "hello there"}}}
local _, ta = dsa:example(1)
local sa = 0
for _, t in ipairs(ta) do sa = sa + t end
check.eq(sa, #ta, "all-token mask")

local f = assert(io.open(tmp .. "/d.jsonl", "w"))
f:write('{"messages":[{"role":"user","content":"q1"},{"role":"assistant","content":"a1"}]}\n\n')
f:write('{"text":"plain line"}\n')
f:close()
local dj = bitlab.dataset{model = m, file = tmp .. "/d.jsonl", seed = 7}
check.eq(dj:size(), 2, "JSONL chat and text lines")
f = assert(io.open(tmp .. "/bad.jsonl", "w"))
f:write('{"text":"fine good text"}\n{"text": broken\n')
f:close()
check.raises(function() bitlab.dataset{model = m, file = tmp .. "/bad.jsonl"} end, "bad.jsonl:2", "malformed JSON names file:line")
f = assert(io.open(tmp .. "/miss.jsonl", "w"))
f:write('{"messages":[{"role":"user"}]}\n')
f:close()
check.raises(function() bitlab.dataset{model = m, file = tmp .. "/miss.jsonl"} end, "miss.jsonl:1", "missing field names file:line")

local b = ds:batch(2, 160)
check.ok(b.B == 2 and b.T == 160 and b.tokens > 0 and b.targets > 0, "batch shape and counts")
check.eq(tostring(b), "bitlab.Batch 2 x 160", "Batch __tostring")
local pos = ds:position()
check.ok(pos.epoch == 0 and pos.pos == 2, "position advances by the batch")
ds:batch(2, 160)
check.eq(ds:position().epoch, 1, "batches wrap into the next epoch")

-- shuffling: same seed same order, seek reproduces
local function order(d, n)
  local o = {}
  for i = 1, n do local bb = d:batch(1, 64); o[i] = bb.tokens end
  return table.concat(o, ",")
end
local mk = function(seed)
  local t = {}
  for i = 1, 12 do t[i] = string.rep("word ", i) end
  return bitlab.dataset{model = m, text = t, seed = seed}
end
local o1, o2, o0 = order(mk(5), 24), order(mk(5), 24), order(mk(0), 24)
check.eq(o1, o2, "same seed, same order")
check.ok(o1 ~= o0, "seed shuffles")
local dsk = mk(5)
order(dsk, 17)
local at = dsk:position()
local rest = order(dsk, 7)
dsk:seek(at)
check.eq(order(dsk, 7), rest, "seek reproduces the order")

dj:add_tokens({1, 5, 6, 7}, 2)
local _, tt = dj:example(3)
check.eq(table.concat(tt), "0011", "add_tokens with a prompt length")

-- student --------------------------------------------------------------------
local st = bitlab.student{model = m, lambda = 0.5, act_bits = 8}
check.eq(st:n_adapters(), 0, "student starts without adapters")
check.eq(st:add_adapter{rank = 4, alpha = 8}, 1, "add_adapter")
st:set_lambda(1)
check.eq(st:lambda(), 1, "set_lambda")
st:set_act_bits(4)
check.eq(st:act_bits(), 4, "set_act_bits")
check.raises(function() st:set_act_bits(5) end, "4, 8 or 16", "bad act bits refused")
check.raises(function() st:set_lambda(2) end, "[0, 1]", "bad lambda refused")
check.raises(function() st.set_lambda(m, 1) end, "bitlab.Student expected", "typed userdata check")
st:set_act_bits(8)
local sam, snll = st:forward(ids)
check.ok(#sam == #ids and snll > 0, "student forward")
local stext, sgen = st:generate(p, {max_tokens = 5})
check.ok(type(stext) == "string" and #sgen <= 5, "student generate")
local mem = st:memory()
check.ok(mem.adapters_trainable > 0 and mem.optimizer > 0, "student memory report")
check.eq(mem.dense, 0, "no dense ΔW: its memory is 0")
-- a dense ΔW alone: its values are the whole trainable part, with one gradient
-- and two AdamW moments each, and it has a float per block-linear weight
-- (q, o: dim²; k, v: at most dim² each under GQA; gate, up, down: dim·hidden)
do
  local mi = m:info()
  local sd = bitlab.student{model = m, dense = true}
  local dm = sd:memory()
  check.eq(dm.adapters_trainable, dm.dense, "dense ΔW is the trainable part")
  check.eq(dm.grads, dm.dense, "dense ΔW has one gradient")
  check.eq(dm.optimizer, 2 * dm.dense, "dense ΔW has two AdamW moments")
  local lo = 4 * mi.n_layers * (2 * mi.dim * mi.dim + 3 * mi.dim * mi.hidden_dim)
  check.ok(dm.dense > lo and dm.dense <= lo + 4 * mi.n_layers * 2 * mi.dim * mi.dim,
           "dense ΔW bytes: one float per block-linear weight")
end
-- lambda 0, no adapter, 16-bit acts: the student is the teacher
local st0 = bitlab.student{model = m, lambda = 0, act_bits = 16}
local am0 = st0:forward(ids)
check.eq(table.concat(am0, ","), table.concat(am, ","), "student at lambda 0 matches the teacher")
check.eq(bitlab.agreement(st0, ds), 1.0, "agreement of an identical student is 1")

-- trainer --------------------------------------------------------------------
local tr = bitlab.trainer{student = st, batch = 2, seq = 160, k = 4}
local first, r
for i = 1, 30 do
  r = tr:step(ds:batch(2, 160), {lr = 1e-2, ce = 1, kl = 1, cos = 1, topk = 0.5, tau = 2})
  first = first or r
end
for _, k in ipairs{"ce", "kl", "topk", "cos", "mag", "total", "grad_norm", "tokens_per_s", "skipped_total"} do
  check.ok(type(r[k]) == "number", "step result has " .. k)
end
check.eq(#r.block_grad_norm, 2, "per-block grad norms")
check.ok(r.kind_grad_norm.q ~= nil, "per-kind grad norms")
check.ok(r.total < first.total, string.format("loss decreases (%.4f -> %.4f)", first.total, r.total))
check.eq(select(1, tr:steps()), 30, "trainer counts steps")
check.raises(function() tr:step(ds:batch(1, 160)) end, "multiple", "batch size must match")
local tr2 = bitlab.trainer{student = st, batch = 1, seq = 160}
check.raises(function() tr2:step(ds:batch(1, 160), {topk = 1}) end, "k=", "top-K needs k")
check.eq(st:rotate{rank = 4, alpha = 8}, 2, "rotate adds an adapter")
check.ok(tr:memory().activations > 0, "trainer memory report")

-- the non-finite guard: a loss weight near the float limit overflows the
-- gradients; such steps are skipped and counted, never applied. Absurd
-- hyper-parameters are refused where they enter, naming the field.
local stn = bitlab.student{model = m}
stn:add_adapter{rank = 2}
local trn = bitlab.trainer{student = stn, batch = 1, seq = 160}
-- (tests/lua/nonfinite.lua sees the skips themselves, on a poisoned model)
local rn
for i = 1, 3 do rn = trn:step(ds:batch(1, 160), {ce = 3e38, kl = 3e38}) end
check.eq(rn.skipped_total, 0, "huge (finite) loss weights: the gradients are clipped, nothing skipped")
local _, snll0 = stn:forward(ids)
check.ok(snll0 == snll0 and snll0 < math.huge, "the weights stay finite")
for _, v in ipairs{1e30, 1e10, math.huge, -math.huge, 0 / 0, -1} do
  check.raises(function() trn:step(ds:batch(1, 160), {lr = v}) end, "option 'lr'", "absurd lr " .. tostring(v) .. " refused")
end
check.raises(function() trn:step(ds:batch(1, 160), {tau = 0}) end, "option 'tau'", "tau 0 refused")
check.raises(function() trn:step(ds:batch(1, 160), {ce = -1}) end, "option 'ce'", "negative loss weight refused")
check.raises(function() trn:step(ds:batch(1, 160), {kl = 0 / 0}) end, "option 'kl'", "NaN loss weight refused")
check.raises(function() bitlab.trainer{student = stn, seq = 16, beta1 = 1} end, "option 'beta1'", "beta1 = 1 refused")
check.raises(function() bitlab.trainer{student = stn, seq = 16, beta2 = -0.1} end, "option 'beta2'", "negative beta2 refused")
check.raises(function() bitlab.trainer{student = stn, seq = 16, eps = 0} end, "option 'eps'", "eps 0 refused")
check.raises(function() bitlab.trainer{student = stn, seq = 16, weight_decay = math.huge} end, "option 'weight_decay'", "infinite weight decay refused")
check.raises(function() bitlab.trainer{student = stn, seq = 16, clip = -1} end, "option 'clip'", "negative clip refused")
check.eq(select(2, trn:steps()), rn.skipped_total, "refused steps are not steps")
-- per-call overrides apply to that call only
local tro = bitlab.trainer{student = stn, batch = 1, seq = 160, ce = 1, kl = 0, lr = 0}
local bo = ds:batch(1, 160)
local ro1 = tro:step(bo, {ce = 0, kl = 1})
local ro2 = tro:step(bo)
check.ok(ro1.ce == 0 and ro2.ce > 0 and ro2.kl == 0, "step overrides do not carry over")

-- checkpoint round trip ------------------------------------------------------
tr:save(tmp .. "/api.ckpt", {note = "x", list = {1, 2, 3}})
-- state must come back as it went: no NaN or infinity written as null
check.raises(function() tr:save(tmp .. "/inf.ckpt", {best = math.huge}) end, "value.best",
  "a non-finite number in the state is refused, naming where")
local ids_before = st:forward(ids)
local st2 = bitlab.student{model = m, lambda = 1, act_bits = 8}
local tr3 = bitlab.trainer{student = st2, batch = 2, seq = 160, k = 4}
local state = tr3:load(tmp .. "/api.ckpt")
check.eq(state.note, "x", "checkpoint returns the script state")
check.eq(#state.list, 3, "checkpoint state keeps lists")
check.eq(st2:n_adapters(), 2, "checkpoint restores the adapter stack")
check.eq(table.concat(st2:forward(ids), ","), table.concat(ids_before, ","), "restored student predicts the same")
local fb = assert(io.open(tmp .. "/api.ckpt", "rb")):read("a")
local fc = assert(io.open(tmp .. "/corrupt.ckpt", "wb"))
fc:write(fb:sub(1, 100) .. string.char((fb:byte(101) + 1) % 256) .. fb:sub(102))
fc:close()
check.raises(function() tr3:load(tmp .. "/corrupt.ckpt") end, "checksum", "corrupt checkpoint refused")
fc = assert(io.open(tmp .. "/short.ckpt", "wb"))
fc:write(fb:sub(1, 1000))
fc:close()
check.raises(function() tr3:load(tmp .. "/short.ckpt") end, "truncated", "truncated checkpoint refused")
local st3 = bitlab.student{model = m, subln = true}
local tr4 = bitlab.trainer{student = st3, batch = 1, seq = 16}
check.raises(function() tr4:load(tmp .. "/api.ckpt") end, "differ", "student option mismatch refused")

-- evaluation -----------------------------------------------------------------
local ppl_t, rows = bitlab.perplexity(m, ds)
local ppl_s = bitlab.perplexity(st, ds)
check.ok(ppl_t > 1 and ppl_s > 1 and rows > 0, "perplexity of teacher and student")
local ag = bitlab.agreement(st, ds)
check.ok(ag >= 0 and ag <= 1, "agreement in [0, 1]")
check.eq(bitlab.common_prefix({1, 2, 3, 4}, {1, 2, 5}), 2, "common prefix")

-- knobs, random, metrics -----------------------------------------------------
local k = bitlab.knob{name = "api_k", value = 1, min = 0, max = 2}
k.value = 5
check.eq(k.value, 2, "knob clamps to max")
k:set(-1)
check.eq(k:get(), 0, "knob clamps to min")
check.eq(bitlab.knob{name = "api_k", value = 1}.value, 0, "redeclaring returns the existing knob")
check.eq(bitlab.knobs().api_k, 0, "knobs() lists values")
bitlab.seed(42)
local r1 = {bitlab.random(), bitlab.random(10)}
bitlab.seed(42)
check.ok(bitlab.random() == r1[1] and bitlab.random(10) == r1[2], "bitlab.random is seeded")
bitlab.event("api_event", {x = 1})
check.ok(bitlab.poll(1), "poll without interrupt")
check.done()
