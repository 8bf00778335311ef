-- train_eval.lua - bitlab.train's held-out evaluation, best checkpoint and
-- export at the end. arg[1] = model, arg[2] = a folder.
--   eval every 4 steps of a 10-step run: at steps 4, 8 and 10 (the last);
--   without every, at each tenth of the budget;
--   the evaluations do not disturb training (the losses equal a run without);
--   the best checkpoint is the student of the step with the lowest held-out
--   KL (bitlab.eval of that checkpoint gives that KL; the teacher cache makes
--   both read the teacher's side from the same file, so they differ by float
--   rounding at most when the first evaluation, which wrote it, was the best);
--   eval.tokens = N evaluates the same first examples every time, as
--   bitlab.eval{tokens = N} of the checkpoint does;
--   export = {...} writes the final student; bad options are refused.
local check = require "check"
local m = bitlab.load_model(arg[1])
local dir = arg[2]
local train_text = {
  "the model learns from the teacher and the student learns from tokens",
  "hello world the ternary weights of the student are bits",
}
local held = bitlab.dataset{model = m, text = {"a teacher of 42 tokens is a model of the world",
                                               "the bits of the world learn from a model"}}

local function train(o)
  local recs = {}
  o.model, o.data = m, bitlab.dataset{model = m, text = train_text}
  o.steps = o.steps or 10
  o.batch, o.seq, o.knobs, o.progress_every, o.lr = 2, 12, false, 1000, 3e-3
  o.on_step = function(_, r) recs[#recs + 1] = r end
  bitlab.seed(11)
  return bitlab.train(o), recs
end

local cache = dir .. "/teacher_cache"
local ck = dir .. "/run.ckpt"
local run, recs = train{checkpoint = ck, eval = {data = held, every = 4, teacher_cache = cache},
                        export = {out = dir .. "/student.gguf"}}
local steps = {}
for _, e in ipairs(run.evals) do steps[#steps + 1] = e.step end
check.eq(table.concat(steps, ","), "4,8,10", "evaluated every 4 steps and at the last")
local lo = math.huge
for _, e in ipairs(run.evals) do lo = math.min(lo, e.kl) end
check.ok(run.best and run.best.kl == lo and run.best.path == ck .. ".best", "best is the lowest held-out KL, at checkpoint .. '.best'")

local tenths = train{steps = 20, eval = {data = held, best = false}}
steps = {}
for _, e in ipairs(tenths.evals) do steps[#steps + 1] = e.step end
check.eq(table.concat(steps, ","), "2,4,6,8,10,12,14,16,18,20", "without every: at each tenth of the budget")

local _, plain = train{}
local same = #plain == #recs
for i, r in ipairs(plain) do same = same and r.total == recs[i].total and r.grad_norm == recs[i].grad_norm end
check.ok(same, "evaluations leave training untouched: the same losses as a run without them")

local rep = bitlab.eval{model = m, checkpoint = run.best.path, data = held, teacher_cache = cache}
check.near(rep.kl, run.best.kl, 1e-5 * math.abs(run.best.kl), "the best checkpoint holds the best step's student")
local t = bitlab.trainer{student = bitlab.student{model = m}, batch = 2, seq = 12}
check.eq(t:load(run.best.path).step, run.best.step, "the best checkpoint records its step")

check.ok(run.export and run.export.path == dir .. "/student.gguf" and io.open(run.export.path, "rb") ~= nil,
  "export = {out = ...} writes the final student")
check.eq(run.ended_by, "steps", "ended by its step budget")

-- eval.tokens: the held-out set cut after the first example reaching the cap
-- (here 1 token: the first example alone), the same set at every evaluation
-- and the set bitlab.eval{tokens =} of the final checkpoint scores
local _, tg1 = held:example(1)
local rows1 = 0
for t = 2, #tg1 do rows1 = rows1 + tg1[t] end -- row t-1 is scored when token t is a target
local ck2 = dir .. "/capped.ckpt"
local capped = train{checkpoint = ck2, eval = {data = held, every = 5, tokens = 1, teacher_cache = false, best = false}}
local all_first = #capped.evals == 2
for _, e in ipairs(capped.evals) do all_first = all_first and e.scored_tokens == rows1 end
check.ok(all_first, "eval.tokens = 1: every evaluation scores the first example's " .. rows1 .. " tokens")
local whole = bitlab.eval{model = m, checkpoint = ck2, data = held}
check.ok(whole.scored_tokens > rows1, "the uncapped set is larger (" .. whole.scored_tokens .. " tokens)")
local again = bitlab.eval{model = m, checkpoint = ck2, data = held, tokens = 1}
check.ok(again.kl == capped.evals[2].kl and again.scored_tokens == rows1,
  "bitlab.eval{tokens = 1} of the final checkpoint gives the last evaluation's KL")
check.raises(function() train{eval = {data = held, tokens = 0}} end, "'eval.tokens'", "refused: eval.tokens = 0")

for _, bad in ipairs{{eval = {every = 2}, name = "'eval'"}, {eval = {data = held, every = 0}, name = "'eval.every'"},
                     {eval = {data = held, best = 3}, name = "'eval.best'"}, {export = {format = "gguf"}, name = "'export'"}} do
  local name = bad.name
  bad.name = nil
  check.raises(function() train(bad) end, name, "refused: " .. name)
end
check.done()
