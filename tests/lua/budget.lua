-- budget.lua - bitlab.train's budgets (steps / tokens / seconds, the first
-- reached ends the run), the progress fraction and ETA in the step records,
-- schedules in fractions of the run, and a token budget carried through a
-- checkpoint: a run stopped at step 3 and resumed trains the same steps with
-- the same losses as the uninterrupted one. arg[1] = model, arg[2] = a folder.
local check = require "check"
local m = bitlab.load_model(arg[1])
local dir = arg[2]
local texts = {
  "the model learns from the teacher and the student learns from tokens",
  "hello world the ternary weights of the student are bits",
  "a teacher of 42 tokens is a model of the world",
}
local B, T = 2, 8

local function train(o)
  local recs = {}
  o.model = o.model or m
  o.data = o.data or bitlab.dataset{model = m, text = texts, seq = T, long = "split"}
  o.batch, o.seq, o.knobs, o.progress_every = B, T, false, 1000
  o.on_step = function(_, r) recs[#recs + 1] = r end
  bitlab.seed(7)
  local run = bitlab.train(o)
  return run, recs
end

-- bad budgets are refused, naming the option
local ds = bitlab.dataset{model = m, text = texts}
for _, bad in ipairs{{tokens = 0, name = "'tokens'"}, {tokens = 1.5, name = "'tokens'"},
                     {seconds = -1, name = "'seconds'"}, {seconds = 0 / 0, name = "'seconds'"},
                     {steps = "10", name = "'steps'"}, {name = "give a budget"}} do
  local name = bad.name
  bad.name, bad.model, bad.data = nil, m, ds
  check.raises(function() bitlab.train(bad) end, name, "refused: " .. name)
end

-- a token budget: the run ends on the step whose tokens reach it
local run, recs = train{tokens = 100}
local seen = 0
for _, r in ipairs(recs) do seen = seen + r.tokens end
check.ok(seen >= 100 and seen - recs[#recs].tokens < 100, "tokens = 100: the last step reaches the budget (" .. seen .. " tokens)")
check.eq(run.manifest.tokens_seen, seen, "the manifest counts the tokens trained on")
local mono = true
for i = 2, #recs do mono = mono and recs[i].progress >= recs[i - 1].progress end
check.ok(mono and recs[#recs].progress == 1, "progress grows to 1")
check.near(recs[1].progress, recs[1].tokens / 100, 1e-12, "progress is tokens seen / budget")
check.ok(recs[1].eta_seconds and recs[1].eta_seconds >= 0 and recs[#recs].eta_seconds == 0,
  "eta_seconds in every record, 0 at the end")

-- steps and tokens together: the first reached ends the run
run = train{tokens = 10 ^ 9, steps = 3}
check.eq(run.step, 3, "steps = 3 with a huge token budget stops at step 3")
run = train{tokens = 40, steps = 1000}
check.ok(run.step < 1000 and run.manifest.tokens_seen >= 40, "tokens = 40 with steps = 1000 stops on tokens")

-- a seconds budget: the loop's step seconds add up to it on the last step
run, recs = train{seconds = 0.3}
local secs = 0
for _, r in ipairs(recs) do secs = secs + r.step_seconds end
check.ok(secs >= 0.3 and secs - recs[#recs].step_seconds < 0.3,
  string.format("seconds = 0.3: the last step reaches it (%d steps, %.3f s)", #recs, secs))

-- schedules in fractions follow the budget: lambda = ramp(0, 1, 0.5) over a
-- token budget takes each step's lambda from the fraction before that step
local lam = bitlab.schedule.ramp(0, 1, 0.5)
run, recs = train{tokens = 160, lambda = lam}
local prev, follows = 0, true
for _, r in ipairs(recs) do
  follows = follows and r.lambda == lam(r.step, prev)
  prev = r.progress
end
check.ok(follows and recs[1].lambda == 0 and recs[#recs].lambda == 1, "lambda = ramp(0, 1, 0.5) follows the token budget")
check.eq(run.manifest.lambda_schedule.points[1][2], 0, "the manifest samples the ramp at the fractions the run had")

-- a token budget through a checkpoint: stop at step 3, resume, same steps and losses
local full
full, recs = train{tokens = 160, lambda = lam, lr = 1e-3}
local ck = dir .. "/budget.ckpt"
local stop_after = 3
local stopped, srecs = nil, nil
do
  local n = 0
  stopped, srecs = train{tokens = 160, lambda = lam, lr = 1e-3, checkpoint = ck,
                         stop = function() n = n + 1; return n > stop_after end}
end
check.eq(stopped.step, stop_after, "stop() ends the run after step 3, checkpointed")
local resumed, rrecs = train{tokens = 160, lambda = lam, lr = 1e-3, resume = ck}
check.eq(resumed.step, full.step, "the resumed run ends on the same step as the uninterrupted one")
check.eq(resumed.manifest.tokens_seen, full.manifest.tokens_seen, "and has seen the same tokens")
local same = #rrecs == #recs - stop_after
for i, r in ipairs(rrecs) do
  local f = recs[stop_after + i]
  same = same and f and r.step == f.step and r.total == f.total and r.lambda == f.lambda and r.progress == f.progress
end
check.ok(same and #srecs == stop_after, "resumed steps: the same lambda, progress and losses, bit for bit")
check.done()
