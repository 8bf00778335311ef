-- relation.lua - the attention-relation loss (rel, BitDistill / MiniLM-v2) through
-- bitlab.trainer{relation_layer = N} and trainer:step: a few steps with loss
-- {kl = 1, rel = 1} on the tiny model (rel > 0 and finite, in the total, going
-- down on a repeated batch), a step that sets rel = 0, bad arguments refused
-- naming the option, and bitlab.train's default layer (the last) when the mix
-- weighs rel.
-- bitlab tests/lua/relation.lua -- MODEL TMPDIR
local check = require "check"
local lossmix = require "bitlab.loss"
local path = arg[1]

local m = bitlab.load_model(path)
local L = m:info().n_layers
local texts = {"the student learns the relations of the teacher's queries and keys",
               "a second text for the relations of the values"}
local ds = bitlab.dataset{model = m, text = texts}
local T = ds:max_len()
local st = bitlab.student{model = m, lambda = 1, act_bits = 8}
st:add_adapter{rank = 4, alpha = 8, seed = 3}
local tr = bitlab.trainer{student = st, batch = 1, seq = T, ce = 0, kl = 1, rel = 1,
                          relation_layer = L, lr = 1e-2}
local b = ds:batch(1, T)
local rels, finite = {}, true
for i = 1, 6 do
  local r = tr:step(b)
  rels[i] = r.rel
  finite = finite and r.rel == r.rel and r.rel < math.huge and r.total == r.total
  if i == 1 then
    check.near(r.total, r.kl + r.rel, 1e-9 * r.total, "the total is kl + rel")
  end
end
check.ok(rels[1] > 0, string.format("rel > 0 at the start (%.6g)", rels[1]))
check.ok(finite, "rel and the total stay finite")
local lowest = math.huge
for i = 2, #rels do lowest = math.min(lowest, rels[i]) end
check.ok(lowest < rels[1], string.format("rel goes down on a repeated batch (%.6g, then at best %.6g)",
  rels[1], lowest))
local off = tr:step(b, {rel = 0})
check.eq(off.rel, 0, "a step with rel = 0 does not compute it")
-- layer 1 works too (a relation of an early layer)
local tr1 = bitlab.trainer{student = st, batch = 1, seq = T, kl = 1, rel = 1, relation_layer = 1, lr = 0}
check.ok(tr1:step(b).rel > 0, "relation_layer = 1 gives a relation loss")

-- bad arguments, each naming the option
check.raises(function() bitlab.trainer{student = st, seq = T, relation_layer = 0} end,
  "option 'relation_layer'", "relation_layer = 0 is refused (layers count from 1)")
check.raises(function() bitlab.trainer{student = st, seq = T, relation_layer = L + 1} end,
  "option 'relation_layer'", "relation_layer past the last layer is refused")
check.raises(function() bitlab.trainer{student = st, seq = T, relation_layer = "last"} end,
  "option 'relation_layer'", "relation_layer as a string is refused")
check.raises(function() bitlab.trainer{student = st, seq = T, rel = 1} end,
  "relation_layer", "rel without relation_layer is refused")
local plain = bitlab.trainer{student = st, batch = 1, seq = T, kl = 1}
check.raises(function() plain:step(b, {rel = 1}) end, "relation_layer",
  "a step with rel on a trainer without relation_layer is refused")
check.raises(function() tr:step(b, {rel = -1}) end, "'rel'", "a negative rel is refused")

-- the loss mixes know the term; bitlab.train defaults to the last layer
check.ok(lossmix.presets.kd_cos_rel.rel == 1, "the kd_cos_rel preset weighs rel")
check.eq(lossmix.at({kl = 1}, 1).rel, 0, "rel is 0 when a mix leaves it out")
local recs = {}
local run = bitlab.train{model = m, data = ds, steps = 3, batch = 1, seq = T, knobs = false,
                         loss = {kl = 1, rel = 1}, progress_every = 1000,
                         on_step = function(_, r) recs[#recs + 1] = r end}
check.eq(#recs, 3, "bitlab.train ran 3 steps")
check.ok(run.last.rel > 0 and run.last.weights.rel == 1,
  string.format("bitlab.train's steps carry rel (%.6g)", run.last.rel))
check.ok(run.manifest.final_metrics.rel == run.last.rel, "the manifest's final metrics carry rel")
check.done()
