-- gradual.lua - gradual quantisation: lambda warms from 0 (teacher
-- precision) to 1 (ternary) over the first 40% of the steps, then stays at
-- 1; warm-up + cosine LR; optional RMSNorm after attention; trains on a
-- JSONL chat file (e.g. one written by selfgen.lua). Evaluation always runs
-- the student at lambda = 1, the precision it will be deployed at.
--
-- bitlab experiments/gradual.lua -- [MODEL] [STEPS] [TRAIN.jsonl] [EVAL.jsonl] [post_attn_norm]
local S = bitlab.schedule
local path = arg[1] or os.getenv("BITLAB_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf"
local steps = math.tointeger(tonumber(arg[2] or 200))
local train_file = arg[3] or "experiments/data/chat_small.jsonl"
local eval_file = arg[4] or "experiments/data/chat_eval.jsonl"
local post_norm = arg[5] == "post_attn_norm"

local model = bitlab.load_model(path)
local data = bitlab.dataset{model = model, file = train_file, seed = 1}
local eval = bitlab.dataset{model = model, file = eval_file}

-- λ = 1 for the measurement, then back to the schedule's value
local function evaluate(student, step)
  local lam = student:lambda()
  student:set_lambda(1)
  local ppl = bitlab.perplexity(student, eval)
  local agree = bitlab.agreement(student, eval)
  student:set_lambda(lam)
  print(string.format("[eval step %d, lambda 1] perplexity %.3f  top-1 agreement %.3f", step, ppl, agree))
  bitlab.event("eval", {perplexity = ppl, agreement = agree, lambda = 1})
end

local every = math.max(1, steps // 4)
local run = bitlab.train{
  model = model, data = data, steps = steps, batch = 4,
  post_attn_norm = post_norm,
  adapter = {rank = 16, alpha = 32, seed = 1},
  lambda = S.piecewise{{1, 0}, {math.max(2, math.floor(0.4 * steps)), 1}},
  lr = S.warmup_cosine{peak = 1e-3, warmup = math.max(1, steps // 20), total = steps, min = 1e-4},
  loss = {ce = 1, kl = 1, cos = 1, tau = 2},
  checkpoint = os.getenv("GRADUAL_CHECKPOINT"), checkpoint_every = every,
  on_step = function(step, _, ctx)
    if step % every == 0 then evaluate(ctx.student, step) end
  end,
}
print(string.format("teacher perplexity on the eval set: %.3f", bitlab.perplexity(model, eval)))
evaluate(run.student, run.step)
