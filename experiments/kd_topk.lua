-- kd_topk.lua - knowledge distillation through the teacher's top-K
-- probabilities (plus an "other" bucket) at temperature 1.3, with CE; the
-- activations drop from 8 to 4 bits once 90% of the token budget is seen.
--
-- bitlab experiments/kd_topk.lua -- [MODEL] [TOKEN_BUDGET] [TRAIN.jsonl] [K]
local path = arg[1] or os.getenv("BITLAB_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf"
local budget = tonumber(arg[2] or 40000)
local train_file = arg[3] or "experiments/data/chat_small.jsonl"
local K = math.tointeger(tonumber(arg[4] or 32))

local model = bitlab.load_model(path)
local data = bitlab.dataset{model = model, file = train_file, seed = 2}
local B, T = 4, data:max_len()
local seen = 0 -- tokens trained on so far (sum of lens, padding excluded)
-- enough steps for the budget even if every batch is short
local steps = math.ceil(budget / (B * 8))

local run = bitlab.train{
  model = model, data = data, steps = steps, batch = B, seq = T,
  adapter = {rank = 16, alpha = 32, seed = 1}, rotate_every = 100,
  lambda = 1,
  act_bits = function() return seen >= 0.9 * budget and 4 or 8 end,
  lr = bitlab.schedule.relora{base = bitlab.schedule.warmup_cosine{peak = 1e-3, warmup = 10, total = steps, min = 1e-4},
                              every = 100, warmup = 10},
  loss = {ce = 1, topk = 1, tau = 1.3}, topk_k = K,
  on_step = function(step, r)
    local before = seen
    seen = seen + r.tokens
    if before < 0.9 * budget and seen >= 0.9 * budget then
      print(string.format("step %d: 90%% of the token budget seen, activations -> 4 bits", step))
      bitlab.event("act_bits", {from = 8, to = 4, tokens = seen})
    end
  end,
  stop = function() return seen >= budget end,
}
print(string.format("trained on %d tokens (budget %d), final top-K KL %.4f, CE %.4f",
  seen, budget, run.last.topk, run.last.ce))
