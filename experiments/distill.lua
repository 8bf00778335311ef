-- distill.lua - the real job on one page: a ternary student that is good on
-- text it never saw. Train on a corpus of text or chat (TRAIN), for a budget of
-- time, tokens or steps, with the held-out set (HELDOUT) evaluated every
-- tenth of the run (perplexity, KL(teacher||student), top-1 / top-5
-- agreement at lambda 1; the teacher's side computed once and cached), the
-- checkpoint with the lowest held-out KL kept as OUT.ckpt.best, and the final
-- student exported to OUT.gguf.
--
-- bitlab experiments/distill.lua -- [MODEL] [BUDGET] [TRAIN] [HELDOUT] [OUT]
--   MODEL    default $BITLAB_MODEL, then models/SmolLM2-135M-Instruct.Q4_1.gguf
--   BUDGET   "30m" or "90s" (wall time), "200k" / "1.5M" / "5000t" (tokens
--            trained on), or a plain number of steps; default "30m"
--   TRAIN    a file, folder or glob of .txt / .md / .jsonl (text or chat), packed into
--            full rows (bitlab.corpus: documents end to end, no padding, attention
--            within each document); default experiments/data/chat_small.jsonl;
--            or "teacher" / "teacher:PROMPTS.txt": no corpus, the teacher writes the
--            training data as the run needs it (bitlab.dataset{teacher = ...}):
--            answers to the prompts (default experiments/data/prompts.txt, cycled
--            with new seeds), temperature 0.8, top-p 0.95, up to 96 tokens, 16 rows
--            decoded together, bitlab.filters' defaults; the kept pairs also go to
--            OUT.teacher.jsonl
--   HELDOUT  .txt / .jsonl never trained on; default experiments/data/heldout.txt
--   OUT      path prefix of the checkpoint and the export; default distill
--
-- The recipe (chosen by the study in docs/distill-default-model.md): a dense
-- trainable delta-W on the frozen weights of every block linear; lambda
-- ramped 0 -> 1 over the first 30 % of the budget (the student starts as
-- the teacher and is quantised gradually), 8-bit activations; LR warm-up
-- over 5 % then cosine from 1e-3 to 1e-4; loss CE + KL (tau 2) +
-- hidden-state cosine. Schedules are fractions of the budget, so the same
-- recipe fits a 2-minute try and an overnight run. A dense delta-W with its
-- gradient and AdamW moments costs 16 bytes per block weight (`bitlab plan
-- --dense`: a 4.7 GiB training peak on the CPU for the default model, 1.3 GB
-- checkpoints); BITLAB_DISTILL_LORA=1 trains a rank-32 LoRA stack rotated
-- every 200 steps (ReLoRA) instead (a 1.8 GiB peak), the choice for a 1B-8B
-- teacher.
local S = bitlab.schedule

local path = arg[1] or os.getenv("BITLAB_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf"
local budget_arg = arg[2] or "30m"
local train_file = arg[3] or "experiments/data/chat_small.jsonl"
local heldout = arg[4] or "experiments/data/heldout.txt"
local out = arg[5] or "distill"

-- "30m" -> {seconds = 1800}, "200k" -> {tokens = 200000}, "120" -> {steps = 120}
local function parse_budget(s)
  local n, unit = s:match("^(%d+%.?%d*)(%a?)$")
  n = tonumber(n)
  local scale = {m = 60, s = 1, h = 3600}
  local tokens = {k = 1e3, M = 1e6, G = 1e9, t = 1}
  if n and scale[unit] then return {seconds = n * scale[unit]} end
  if n and tokens[unit] then return {tokens = math.floor(n * tokens[unit] + 0.5)} end
  if n and unit == "" and n == math.floor(n) then return {steps = math.tointeger(n)} end
  error(string.format("distill.lua: budget %q: give 30m / 90s / 2h (time), 200k / 1.5M / 5000t (tokens) or 120 (steps)", s), 0)
end

local model = bitlab.load_model(path)
local T = 256
local teacher_prompts = train_file == "teacher" and "experiments/data/prompts.txt"
  or train_file:match("^teacher:(.+)$")
local data
if teacher_prompts then
  data = bitlab.dataset{teacher = model, prompts = teacher_prompts, max_tokens = 96, temperature = 0.8,
                        top_p = 0.95, seed = 1, batch = 16, chunk = 32, seq = T, long = "split",
                        jsonl = out .. ".teacher.jsonl"}
else
  data = bitlab.corpus{model = model, path = train_file, seq = T, seed = 1}
end
local budget = parse_budget(budget_arg)
local lora = os.getenv("BITLAB_DISTILL_LORA") == "1"

local run = bitlab.train{
  model = model, data = data, batch = 4, seq = T,
  steps = budget.steps, tokens = budget.tokens, seconds = budget.seconds,
  dense = not lora, adapter = lora and {rank = 32, alpha = 32, seed = 1},
  rotate_every = lora and 200 or nil,
  lambda = S.ramp(0, 1, 0.3), act_bits = 8,
  lr = S.warmup_cosine{peak = 1e-3, warmup = 0.05, min = 1e-4},
  loss = {ce = 1, kl = 1, cos = 1, tau = 2},
  checkpoint = out .. ".ckpt", checkpoint_every = 100,
  eval = {data = heldout}, -- at every tenth of the budget
  export = {out = out .. ".gguf"},
  prompts = {"What is the capital of France?"}, generate_every = 100,
}

if teacher_prompts then
  local s = data:stats()
  print(string.format("teacher data: %d of %d answers kept (%d rejected), %d teacher tokens at %.0f tok/s; %s",
    s.kept, s.total, s.rejected_total, s.teacher_tokens, s.tokens_per_s, out .. ".teacher.jsonl"))
end
if run.best then
  print(string.format("best held-out KL %.4f at step %d%s", run.best.kl, run.best.step,
    run.best.path and (" (" .. run.best.path .. ")") or ""))
end
