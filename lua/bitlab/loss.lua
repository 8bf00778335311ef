-- bitlab.loss - loss mixes: which terms of the distillation step are on and
-- with what weight. A mix maps term names (ce, kl, topk, cos, mag, rel, tau) to
-- numbers, schedules (function(step)) or knobs; M.knobs turns the numbers
-- into live knobs named "w_<term>" so a control file or the dashboard can
-- tweak them; M.at evaluates a mix at a step for trainer:step.
local schedule = require "bitlab.schedule"

local M = {}

-- rel: BitDistill's attention-relation distillation (MiniLM-v2 style: KL of
-- the teacher's and student's softmax-normalised Q-Q / K-K / V-V relations at
-- one layer; bitlab.trainer's relation_layer, bitlab.train's default the last)
M.TERMS = {"ce", "kl", "topk", "cos", "mag", "rel", "tau"}

-- Presets (weights; tau for the KL terms).
M.presets = {
  ce = {ce = 1},
  kd = {ce = 1, kl = 1, tau = 2},
  kd_cos = {ce = 1, kl = 1, cos = 1, tau = 2},
  -- BitDistill's logits + attention-relation distillation, with the hidden cosine
  kd_cos_rel = {ce = 1, kl = 1, cos = 1, rel = 1, tau = 2},
  topk = {ce = 1, topk = 1, tau = 1.3},
}

-- A copy of mix in which every number becomes a knob w_<term> (tau: "tau")
-- with range [0, max] (default 100).
-- fixed: a set of terms left as numbers (no knob), e.g. what a teacher trace
-- fixes ({tau = true, kl = true}): a knob the run cannot serve is not offered.
function M.knobs(mix, max, fixed)
  local out = {}
  -- declared in M.TERMS order (pairs' order varies between runs), so the
  -- dashboard lists the knobs the same way every time
  local rank, keys = {}, {}
  for i, t in ipairs(M.TERMS) do rank[t] = i end
  for k in pairs(mix) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ra, rb = rank[a] or math.huge, rank[b] or math.huge
    if ra ~= rb then return ra < rb end
    return tostring(a) < tostring(b)
  end)
  for _, k in ipairs(keys) do
    local v = mix[k]
    if type(v) == "number" and not (fixed and fixed[k]) then
      local name = k == "tau" and "tau" or "w_" .. k
      local lo = k == "tau" and 0.05 or 0
      out[k] = bitlab.knob{name = name, value = v, min = lo, max = max or 100, step = 0.1}
    else
      out[k] = v
    end
  end
  return out
end

-- {term = number} at step (and fraction of the run, for schedules in
-- fractions), with every known term present (0 when absent; tau defaults to 1).
function M.at(mix, step, fraction)
  local w = {}
  for _, k in ipairs(M.TERMS) do
    local v = mix[k]
    w[k] = v ~= nil and schedule.value(v, step, fraction) or (k == "tau" and 1 or 0)
  end
  return w
end

return M
