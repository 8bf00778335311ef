-- overfit.lua - the seed's sanity check: can the ternary student reproduce
-- the teacher's answer to one prompt exactly?
--
-- The teacher (the frozen model) answers the prompt greedily; that exact
-- token sequence becomes the only training example (loss on the answer and
-- its end-of-turn token). The student runs at lambda = 1 (ternary weights)
-- with 8-bit activations from step 0, learns through a LoRA stack rotated
-- every `rotate` steps (ReLoRA-style jagged LR), with CE + KL + hidden-state
-- cosine. At the end teacher and student answer side by side and the
-- length of their common greedy prefix (in tokens) is reported.
--
-- bitlab experiments/overfit.lua [--log F] -- [MODEL] [STEPS] [MAX_TOKENS]
--   MODEL defaults to $BITLAB_MODEL, then models/SmolLM2-135M-Instruct.Q4_1.gguf
--   STEPS (default 120) and MAX_TOKENS of the teacher's answer (default 64)
--   can also come from $OVERFIT_STEPS / $OVERFIT_MAX_TOKENS.
local PROMPT = "Can you provide ways to eat combinations of bananas and dragonfruits?"

local path = arg[1] or os.getenv("BITLAB_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf"
local steps = math.tointeger(tonumber(arg[2] or os.getenv("OVERFIT_STEPS") or 120))
local max_tokens = math.tointeger(tonumber(arg[3] or os.getenv("OVERFIT_MAX_TOKENS") or 64))
local rotate = math.max(1, steps // 3)
local t0 = bitlab.clock()

local model = bitlab.load_model(path)
print(string.format("model %s: %d layers, dim %d", path, model:info().n_layers, model:info().dim))

local prompt = model:prompt(PROMPT)
local teacher_text, teacher_ids = model:generate(prompt, {max_tokens = max_tokens})
print(string.format("teacher answer (%d tokens):\n%s\n", #teacher_ids, teacher_text))

-- prompt + answer (+ end-of-turn when the teacher stopped by itself)
local seq = table.move(prompt, 1, #prompt, 1, {})
table.move(teacher_ids, 1, #teacher_ids, #seq + 1, seq)
if #teacher_ids < max_tokens then seq[#seq + 1] = model:info().stop_tokens[1] end
local data = bitlab.dataset{model = model}
data:add_tokens(seq, #prompt)

local run = bitlab.train{
  model = model, data = data, steps = steps,
  adapter = {rank = 32, alpha = 32, seed = 1},
  rotate_every = rotate,
  lambda = 1, act_bits = 8,
  -- the forward the exported student will run: exact int8 x ternary products
  -- (VNNI on the CPU), and the fastest path at lambda 1
  integer_forward = true,
  lr = bitlab.schedule.relora{base = bitlab.schedule.warmup_cosine{peak = 3e-3, warmup = 10,
                                                                   total = steps, min = 3e-4},
                              every = rotate, warmup = 10},
  loss = {ce = 1, kl = 1, cos = 1, tau = 1},
  checkpoint = os.getenv("OVERFIT_CHECKPOINT"), checkpoint_every = os.getenv("OVERFIT_CHECKPOINT") and 50 or nil,
  progress_every = 10,
  -- in the dashboard: the prompt side by side (Tab/e work on it), refreshed
  -- six times over the run; the teacher's answer is the one above
  prompts = {PROMPT}, max_tokens = max_tokens, teacher_ids = {[PROMPT] = teacher_ids},
  generate_every = bitlab.dashboard and math.max(1, steps // 6) or nil,
}

local student_text, student_ids = run.student:generate(prompt, {max_tokens = max_tokens})
local common = bitlab.common_prefix(teacher_ids, student_ids)
bitlab.show_generation{prompt = PROMPT, model = model, teacher = teacher_ids, student = student_ids}
print("\n--- teacher ---\n" .. teacher_text)
print("--- student (lambda 1, 8-bit activations) ---\n" .. student_text)
print(string.format("\ncommon greedy prefix: %d of %d teacher tokens (student produced %d)",
  common, #teacher_ids, #student_ids))
local last = run.last
print(string.format("final ce %.4f  kl %.4f  cos %.4f  after %d steps in %.1f s",
  last.ce, last.kl, last.cos, run.step, bitlab.clock() - t0))
bitlab.event("overfit_result", {common_prefix = common, teacher_tokens = #teacher_ids,
  student_tokens = #student_ids, teacher = teacher_text, student = student_text,
  ce = last.ce, kl = last.kl, cos = last.cos, seconds = bitlab.clock() - t0})
