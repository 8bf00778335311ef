-- bitllama.lua - BitNet-style quantisation-aware training without a
-- teacher signal: every BitLinear gets its internal RMSNorm (SubLN) before
-- the activation quantiser, the loss is next-token CE only (the teacher's
-- KL/cosine weights are 0). The non-finite guard is visible in the metrics:
-- each record carries `skipped` / `skipped_total`, a skipped step logs a
-- "nonfinite_skip" event, and the progress line counts them.
--
-- bitlab experiments/bitllama.lua -- [MODEL] [STEPS] [TRAIN.jsonl]
local path = arg[1] or os.getenv("BITLAB_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf"
local steps = math.tointeger(tonumber(arg[2] or 200))
local train_file = arg[3] or "experiments/data/chat_small.jsonl"

local model = bitlab.load_model(path)
local data = bitlab.dataset{model = model, file = train_file, seed = 4, response_only = false}

local run = bitlab.train{
  model = model, data = data, steps = steps, batch = 4,
  subln = true,
  adapter = {rank = 16, alpha = 32, seed = 1}, rotate_every = 100,
  lambda = 1, act_bits = 8,
  lr = bitlab.schedule.warmup_cosine{peak = 2e-3, warmup = 10, total = steps, min = 2e-4},
  loss = {ce = 1},
}
local _, skipped = run.trainer:steps()
print(string.format("non-finite steps skipped: %d of %d", skipped, run.step))
print(string.format("perplexity: teacher %.3f, student %.3f",
  bitlab.perplexity(model, data), bitlab.perplexity(run.student, data)))
