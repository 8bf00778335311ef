-- lambda_acts.lua - lambda_acts (λ blends the BitLinear inputs too, x + λ·(actq(x) − x))
-- on bitlab.trainer and trainer:step: accepted, refused for a wrong type, a
-- change of the loss at λ < 1 and none at λ = 1, carried by a checkpoint.
-- bitlab tests/lua/lambda_acts.lua -- MODEL TMPDIR
local check = require "check"
local path, tmp = arg[1], arg[2]

local m = bitlab.load_model(path)
local ds = bitlab.dataset{model = m, text = {"just some text to distil, long enough for a few tokens"}}
local T = ds:max_len()
local st = bitlab.student{model = m, lambda = 0.5, act_bits = 4}
st:add_adapter{rank = 2, alpha = 4, seed = 3}
-- lr = 0: the student does not change, so the steps' losses are comparable
local tr = bitlab.trainer{student = st, batch = 1, seq = T, ce = 1, kl = 1, lr = 0}
local b = ds:batch(1, T)
local off = tr:step(b)
local on = tr:step(b, {lambda_acts = true})
local off2 = tr:step(b, {lambda_acts = false})
check.ok(on.total ~= off.total, string.format("lambda_acts changes the loss at lambda 0.5 (%.9g vs %.9g)",
  on.total, off.total))
check.eq(off2.total, off.total, "lambda_acts = false is the default: the same loss")

-- the trainer's default, and a step override of it
local tr_on = bitlab.trainer{student = st, batch = 1, seq = T, ce = 1, kl = 1, lr = 0, lambda_acts = true}
check.eq(tr_on:step(b).total, on.total, "trainer{lambda_acts = true} is every step's default")
check.eq(tr_on:step(b, {lambda_acts = false}).total, off.total, "a step overrides the trainer's default")

-- at λ = 1 the blend is actq itself: bit for bit the same loss
st:set_lambda(1)
local one = tr:step(b, {lambda_acts = false})
check.eq(tr:step(b, {lambda_acts = true}).total, one.total, "lambda_acts changes nothing at lambda 1")
st:set_lambda(0.5)

-- wrong types are refused, naming the option
check.raises(function() bitlab.trainer{student = st, seq = T, lambda_acts = 0.5} end,
  "option 'lambda_acts' must be a boolean", "trainer refuses a number for lambda_acts")
check.raises(function() tr:step(b, {lambda_acts = "yes"}) end,
  "option 'lambda_acts' must be a boolean", "step refuses a string for lambda_acts")

-- a checkpoint carries it: a trainer without the option follows what the
-- student was last trained with (here: with the blend)
tr_on:step(b)
tr_on:save(tmp .. "/lambda_acts.ckpt")
local st2 = bitlab.student{model = m, lambda = 1, act_bits = 4}
local tr2 = bitlab.trainer{student = st2, batch = 1, seq = T, ce = 1, kl = 1, lr = 0}
tr2:load(tmp .. "/lambda_acts.ckpt")
check.eq(st2:lambda(), 0.5, "the checkpoint restores lambda")
check.eq(st2:lambda_acts(), true, "student:lambda_acts() reads what the checkpoint restored")
check.eq(st:lambda_acts(), true, "student:lambda_acts() is what the last step trained with")
check.eq(tr2:step(b).total, on.total, "after a resume the step blends the activations as before")
check.eq(tr2:step(b, {lambda_acts = false}).total, off.total, "and can still be overridden")
check.done()
