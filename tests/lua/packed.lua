-- packed.lua - trainer:step on a packed corpus batch: the batch's doc_start
-- reaches the trainer (a live-teacher step runs; a trainer reading a teacher
-- trace refuses the packed batch, naming why), and lr = 0 steps on the same
-- packed batch are deterministic.
-- bitlab tests/lua/packed.lua -- MODEL TMPDIR (TMPDIR/corpus/*.txt: the corpus)
local check = require "check"
local path, tmp = arg[1], arg[2]

local m = bitlab.load_model(path)
local T = 24
local c = bitlab.corpus{model = m, path = tmp .. "/corpus", seq = T}
local b = c:batch(2)
check.ok(b.packed, "a corpus batch is packed")
local a = b:arrays()
local starts = 0
for i = 1, #a.doc_start do
  if a.doc_start[i] == (i - 1) % T and (i - 1) % T > 0 then starts = starts + 1 end
end
check.ok(starts >= 1, "the batch holds a document starting inside a row")

local st = bitlab.student{model = m, lambda = 1, act_bits = 8}
st:add_adapter{rank = 2, alpha = 4, seed = 3}
local tr = bitlab.trainer{student = st, batch = 2, seq = T, k = 4, lr = 0}
local r1 = tr:step(b, {ce = 1, kl = 1, topk = 0.5, cos = 1, tau = 2})
local r2 = tr:step(b, {ce = 1, kl = 1, topk = 0.5, cos = 1, tau = 2})
check.ok(r1.total == r1.total and r1.total > 0 and r1.teacher == "computed", "a packed step")
check.eq(r2.total, r1.total, "the same packed batch at lr = 0: the same loss")

local ds = bitlab.dataset{model = m, text = {"a short text for the trace", "and another one"}}
local t = bitlab.trace{model = m, data = ds, k = 4, out = tmp .. "/p.trace"}
local trt = bitlab.trainer{student = st, batch = 2, seq = T, trace = t.path, data = ds}
check.raises(function() trt:step(b, {ce = 1, kl = 0, topk = 1, tau = 1}) end,
  "teacher traces hold unpacked rows; packed batches need the live teacher",
  "a trainer reading a trace refuses a packed batch")
check.done()
