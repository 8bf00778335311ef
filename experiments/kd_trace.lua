-- kd_trace.lua - top-K knowledge distillation (+ CE) from a teacher trace:
-- the teacher's top-K log-probabilities over the training data are computed
-- once (bitlab.trace) and every step reads them instead of running the
-- teacher forward (step records say teacher = "trace").
--
-- The trace is made when it is absent, and made again when the trainer
-- refuses it as stale (made from another model, other data, another K or
-- temperature: the refusal is printed).
--
-- bitlab experiments/kd_trace.lua -- [MODEL] [STEPS] [TRAIN.jsonl] [K] [TRACE]
--   defaults: $BITLAB_MODEL or models/SmolLM2-135M-Instruct.Q4_1.gguf, 100 steps,
--   experiments/data/chat_small.jsonl, K = 32, TRACE = TRAIN with .k<K>.trace
local path = arg[1] or os.getenv("BITLAB_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf"
local steps = math.tointeger(tonumber(arg[2] or 100))
local train_file = arg[3] or "experiments/data/chat_small.jsonl"
local K = math.tointeger(tonumber(arg[4] or 32))
local trace_path = arg[5] or (train_file:gsub("%.jsonl$", "") .. ".k" .. K .. ".trace")
local TAU = 1 -- a trace holds one temperature; the step must use the same

local model = bitlab.load_model(path)
local data = bitlab.dataset{model = model, file = train_file, seed = 2}
local B, T = 4, data:max_len()

local student = bitlab.student{model = model, lambda = 1, act_bits = 8}
student:add_adapter{rank = 16, alpha = 32, seed = 1}

local function trainer_from_trace()
  -- data = the dataset: a trace made from other data is refused up front
  return bitlab.trainer{student = student, batch = B, seq = T, trace = trace_path, data = data,
                        k = K, ce = 1, topk = 1, tau = TAU, clip = 1}
end

local ok, trainer = pcall(trainer_from_trace)
if not ok then
  print("making the teacher trace: " .. tostring(trainer))
  local s = bitlab.trace{model = model, data = data, k = K, tau = TAU, seq = T, batch = B,
                         out = trace_path}
  print(string.format("trace %s: %d examples, %d positions, %.1f MiB in %.1f s", s.path,
    s.records, s.positions, s.bytes / 2^20, s.seconds))
  trainer = trainer_from_trace()
end
print(tostring(trainer:trace()))

local sources = {}
local run = bitlab.train{
  model = model, data = data, steps = steps, batch = B, seq = T,
  student = student, trainer = trainer,
  rotate_every = 50, adapter = {rank = 16, alpha = 32, seed = 1},
  lambda = 1, act_bits = 8,
  lr = bitlab.schedule.relora{base = bitlab.schedule.warmup_cosine{peak = 1e-3, warmup = 10,
                                                                   total = steps, min = 1e-4},
                              every = 50, warmup = 10},
  loss = {ce = 1, topk = 1, tau = TAU},
  on_step = function(_, r) sources[r.teacher] = (sources[r.teacher] or 0) + 1 end,
}
local parts = {}
for k, n in pairs(sources) do parts[#parts + 1] = k .. " " .. n end
table.sort(parts)
print(string.format("final top-K KL %.4f, CE %.4f after %d steps (teacher: %s)",
  run.last.topk, run.last.ce, run.step, table.concat(parts, ", ")))
