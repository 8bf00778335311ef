-- recipe.lua - one run of the recipe study (docs/distill-default-model.md):
-- the named recipe on the study corpus (bench/study/prepare_corpus.py) for a
-- budget, with the held-out split evaluated at every tenth of the budget.
-- The eval records and the step records of the metrics log (--log) are what
-- bench/study/report.py reads.
--
-- bitlab bench/study/recipe.lua --headless --log RUN.jsonl -- RECIPE BUDGET DATA OUT [MODEL]
--   RECIPE  one of the names in RECIPES below
--   BUDGET  "30m" / "90s" (wall time), "60k" (tokens trained on) or "120" (steps)
--   DATA    the folder prepare_corpus.py wrote (train/, train.jsonl, heldout.txt)
--   OUT     path prefix of the run's checkpoints
--   MODEL   default $BITLAB_MODEL, then models/SmolLM2-135M-Instruct.Q4_1.gguf
--
-- Every recipe trains B = 4 rows of T = 256 tokens a step, 8-bit activations,
-- AdamW with warm-up over 5 % and cosine from 1e-3 to 1e-4, and is evaluated
-- on the same first EVAL_CHUNKS chunks of the held-out split.
local S = bitlab.schedule

local RECIPES = {
  -- today's gradual.lua recipe, schedules in fractions of the budget: one
  -- paragraph a row, padded; one rank-16 LoRA; lambda 0 -> 1 over 40 %
  gradual = {data = "dataset", adapter = {rank = 16, alpha = 32, seed = 1},
             lambda = S.ramp(0, 1, 0.4), loss = {ce = 1, kl = 1, cos = 1, tau = 2}},
  -- distill.lua's recipe before the study (its BITLAB_DISTILL_LORA=1 form):
  -- packed corpus rows, a rank-32 LoRA stack rotated every 200 steps,
  -- lambda 0 -> 1 over 30 %
  distill = {},
  -- one change each against distill; dense is the recipe distill.lua ships
  dense = {adapter = false, dense = true},
  lambda1 = {lambda = 1},
  nocos = {loss = {ce = 1, kl = 1, tau = 2}},
  rel = {loss = {ce = 1, kl = 1, cos = 1, rel = 1, tau = 2}},
  lambda_acts = {lambda_acts = true},
  teacher = {data = "teacher"},
}
local DISTILL = {data = "corpus", adapter = {rank = 32, alpha = 32, seed = 1}, rotate_every = 200,
                 lambda = S.ramp(0, 1, 0.3), loss = {ce = 1, kl = 1, cos = 1, tau = 2}}
local B, T, EVAL_CHUNKS = 4, 256, 16

local name, budget_arg, dir, out = arg[1], arg[2], arg[3], arg[4]
local path = arg[5] or os.getenv("BITLAB_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf"
local r = RECIPES[name or ""]
if not r or not budget_arg or not dir or not out then
  local names = {}
  for k in pairs(RECIPES) do names[#names + 1] = k end
  table.sort(names)
  error("usage: recipe.lua RECIPE BUDGET DATA OUT [MODEL]; RECIPE one of " .. table.concat(names, ", "), 0)
end
for k, v in pairs(DISTILL) do
  if r[k] == nil then r[k] = v end
end

local function parse_budget(s)
  local n, unit = s:match("^(%d+%.?%d*)(%a?)$")
  n = tonumber(n)
  local scale, tokens = {m = 60, s = 1, h = 3600}, {k = 1e3, M = 1e6, t = 1}
  if n and scale[unit] then return {seconds = n * scale[unit]} end
  if n and tokens[unit] then return {tokens = math.floor(n * tokens[unit] + 0.5)} end
  if n and unit == "" then return {steps = math.tointeger(n)} end
  error("recipe.lua: bad budget " .. s, 0)
end

local model = bitlab.load_model(path)
local data
if r.data == "dataset" then
  data = bitlab.dataset{model = model, file = dir .. "/train.jsonl", seq = T, long = "split", seed = 1}
elseif r.data == "corpus" then
  data = bitlab.corpus{model = model, path = dir .. "/train", seq = T, seed = 1}
else -- the teacher writes the training text itself, from the start-of-text token
  -- (passes of 64 samples, 16 a call, sampled as one batch)
  data = bitlab.dataset{teacher = model, bos = true, n = 64, chunk = 16, batch = 16, seq = T,
                        max_tokens = T - 1, temperature = 1.0, top_p = 0.95, seed = 1}
end
local budget = parse_budget(budget_arg)
local run = bitlab.train{
  model = model, data = data, batch = B, seq = T,
  steps = budget.steps, tokens = budget.tokens, seconds = budget.seconds,
  adapter = r.adapter, dense = r.dense, rotate_every = r.rotate_every,
  lambda = r.lambda, act_bits = 8, lambda_acts = r.lambda_acts,
  lr = S.warmup_cosine{peak = 1e-3, warmup = 0.05, min = 1e-4},
  loss = r.loss, knobs = false,
  checkpoint = out .. ".ckpt", checkpoint_every = 1000,
  eval = {data = dir .. "/heldout.txt", max_examples = EVAL_CHUNKS, best = false},
}
local last = run.evals[#run.evals]
print(string.format("recipe %s: %d steps, %s; held-out ppl ratio %.4g, KL %.4f, top-1 %.2f%%",
  name, run.step, tostring(run.ended_by), last.perplexity_ratio, last.kl, 100 * last.agreement))
