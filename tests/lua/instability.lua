-- instability.lua - bitlab.train's instability warnings (tests/py/test_dataset_stats.py
-- checks the metrics). arg[1] = model, arg[2] = "stable" | "unstable".
--   stable    30 steps at lambda 1, lr 1e-4, clip 1: no warning
--   unstable  70 steps at clip 1: lambda 0 until step 11, then 1 (the KL jumps
--             from ~0), and from then on lr 0.1, which drives the gradient norm
--             far above the clip for several steps
-- Here: the instability option's bad values are refused, naming it.
local check = require "check"
local m = bitlab.load_model(arg[1])
local mode = arg[2]
local ds = bitlab.dataset{model = m, text = {
  "the model learns from the teacher and the student learns from tokens",
  "hello world the ternary weights of the student are bits",
  "a teacher of 42 tokens is a model of the world",
}}

local function refused(opt, pattern, what)
  check.raises(function()
    bitlab.train{model = m, data = ds, steps = 1, knobs = false, adapter = false,
                 instability = opt, progress_every = 100}
  end, pattern, what)
end
refused(true, "'instability'", "instability = true is refused")
refused({grad_factor = -1}, "'instability.grad_factor'", "a negative threshold is refused")
refused({every = 0 / 0}, "'instability.every'", "a NaN threshold is refused")
refused({loss_window = "x"}, "'instability.loss_window'", "a string threshold is refused")

local o = {model = m, data = ds, knobs = false, progress_every = 1000}
if mode == "stable" then
  o.steps, o.lambda, o.lr, o.clip = 30, 1, 1e-4, 1
else
  o.steps, o.clip = 70, 1
  o.lambda = function(step) return step < 12 and 0 or 1 end
  o.lr = function(step) return step < 12 and 1e-5 or 0.1 end
end
local run = bitlab.train(o)
check.eq(run.step, o.steps, "the run trains every step")
check.done()
