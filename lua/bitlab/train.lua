-- bitlab.train{...} - the default distillation loop. Experiments may use it
-- as is, steer it with schedules, knobs and on_step, or copy it as the start
-- of their own loop: it only composes the bitlab primitives.
--
-- Options (model, data and a budget are required):
--   model, data            a bitlab.Model and a bitlab.Dataset or bitlab.Corpus (packed
--                          rows; its position is checkpointed like a dataset's, and step
--                          records get corpus = {documents, tokens, tokens_per_s, epoch,
--                          stall_seconds}: corpus:stats()' figures, documents and tokens
--                          since the run's start, the reader's throughput, the time batches
--                          waited on it); or a teacher source (bitlab.dataset{teacher =
--                          model, prompts = ...}: the teacher writes the examples as the
--                          loop needs them; its position is checkpointed and a resumed run
--                          regenerates the same examples; step records get teacher_data =
--                          {examples, served, answers, kept, rejected, teacher_tokens,
--                          tokens_per_s, epoch}: its stats(), see bitlab.teacher_data)
--   steps, tokens, seconds the budget (bitlab.budget), one or several: the last step
--                          (steps are 1-based), the tokens trained on, the loop's wall
--                          seconds (time paused in the dashboard not counted); the first
--                          reached ends the run, and a resumed run continues the same one
--   batch, seq             sequences per step (default 1), their length
--                          (default: the longest example; a corpus's own seq)
--   micro_batch            sequences per forward (default batch, under mpirun batch / world_size)
--   student                an existing bitlab.Student, else one is built from
--                          subln / post_attn_norm / dense
--   adapter                {rank=16, alpha=32, seed=1}; false = none
--   rotate_every           rotate the adapter (new LoRA, optimizer reset) every N steps
--   lr, lambda, act_bits   numbers, schedules (function(step, fraction): fraction is the
--                          part of the budget done before the step, for schedules written
--                          in fractions of the run, e.g. bitlab.schedule.ramp) or knobs
--   loss                   a loss mix (bitlab.loss), default kd_cos; its numbers become
--                          knobs w_<term> unless knobs = false
--   topk_k                 K of the top-K KL (default 32 when the mix has topk; with a
--                          trace, the trace's K)
--   relation_layer         the layer (1-based) of the attention-relation loss rel (see
--                          bitlab.trainer); default when the mix has rel: the last layer
--                          (BitDistill distills a late layer's relations), else none
--   trace                  a teacher trace (path or bitlab.Trace, see bitlab.trace): the
--                          teacher's outputs come from it instead of a forward; the loss
--                          mix must not use kl (and cos / mag only with stored hidden states)
--   clip, weight_decay, beta1, beta2
--   integer_forward        at lambda = 1 with 8- or 4-bit activations, the student
--                          forward's block linears as exact int8 x ternary products
--                          (VNNI on the CPU; see bitlab.trainer); default false
--   lambda_acts            true: lambda blends the BitLinear inputs too, x + lambda*(actq(x) - x)
--                          (the Hugging Face 1.58-bit fine-tuning recipe; see bitlab.trainer);
--                          default: what the student was trained with (false when new)
--   checkpoint             path of the checkpoint file; checkpoint_every N steps
--                          (also written at the end and on Ctrl-C);
--                          checkpoint_frozen_adapters = "bf16" stores the frozen adapters
--                          in bf16 (smaller; a resume is then not bit-exact; default "fp32",
--                          see trainer:save)
--   generate_every, prompts, max_tokens   student generations during training (with
--                          the dashboard up: teacher and student side by side there)
--   teacher_ids            {[prompt] = ids}: teacher answers already generated (the
--                          teacher is frozen, so the dashboard generates each once)
--   progress_every         a progress line every N steps (default 10)
--   instability            warnings when a run turns unstable (default on; false = off; a
--                          table overrides the thresholds below). Each is a "warning" event
--                          {kind, message, ...} in the metrics (the dashboard's events panel
--                          shows its message) and, without the dashboard, a line on stderr;
--                          the message says what to try. Steps skipped as non-finite count
--                          for neither (they have their own event).
--                            kind "grad_norm": the pre-clip gradient norm above
--                              grad_factor (10) x clip for grad_steps (3) steps in a row
--                              (fields grad_norm, clip, factor, steps); not with clip = 0
--                            kind "loss_jump": the total loss, or a loss term the mix
--                              weighs (ce, kl, topk, cos, mag, rel: a KL jump can hide in a total
--                              the CE dominates), above loss_factor (3) x the median of its
--                              last loss_window (20) finite values, and above it by
--                              loss_min_jump (0.1) too, so noise on a loss near 0 is no jump;
--                              needs 5 values first; the term that jumped most is named
--                              (fields term, value, median, window, total)
--                          both carry lambda and lr; each kind warns at most once every
--                          `every` (50) steps
--   eval                   held-out evaluation while training: {data = a .txt/.jsonl path
--                          or a Dataset, every = N steps (default: at every tenth of the
--                          budget, whatever its kind), seq (default bitlab.eval's, so
--                          the numbers equal `bitlab eval --checkpoint`'s), max_examples,
--                          tokens (the held-out set cut after the first example that
--                          brings its scored tokens to N: the same fixed set at every
--                          evaluation, = `bitlab eval --tokens N`), prompts / max_tokens (greedy answers, off by
--                          default), teacher_cache (a folder: the teacher's side is computed
--                          once per run and data and read back by every later evaluation;
--                          default $XDG_CACHE_HOME or ~/.cache, /bitlab/eval-teacher; false =
--                          off), best (the checkpoint written whenever the held-out KL is the
--                          lowest so far; default checkpoint .. ".best" when checkpoint is set,
--                          false = none)}. Each is bitlab.eval{student = ...} (the student at
--                          lambda 1, the ternary model the run ends with), logged as an "eval"
--                          record with the step; the last step is always evaluated. The
--                          result's evals lists {step, kl, perplexity_ratio, agreement, scored_tokens, ...}
--                          and best {step, kl, path}.
--   export                 a table of bitlab.export options (out, format, ternary, embed):
--                          the final student exported when the run ends by its budget (not
--                          when interrupted), with the run's manifest
--   on_step(step, result, ctx)   called after each step; ctx = {student, trainer, data}
--   stop()                 checked before each step: true ends the run early
--   resume                 checkpoint to resume from (default: bitlab --resume)
-- With the dashboard up (bitlab.dashboard) the loop also registers its prompts,
-- the header's facts and what the g / e, s and r keys do (bitlab.on_command),
-- and prints no progress lines (the dashboard shows every step).
-- Step records get step_seconds: the loop's wall time per step (generations
-- and checkpoints included, time paused in the dashboard not), progress (the
-- fraction of the budget done after the step) and eta_seconds (the time left
-- at this session's rates; absent after the first step's record only if it
-- took no time). Progress lines show both; so does the dashboard's header.
-- Returns {student, trainer, last (the last step's result), step, interrupted,
-- ended_by ("steps" / "tokens" / "seconds", or nil when stopped), evals, best,
-- export (bitlab.export's result), manifest}: manifest is the run's record for an export's training manifest
-- (bitlab.export{..., manifest = run.manifest}); checkpoints carry it too
-- (state.manifest), so `bitlab export` finds it there:
--   base_model (path), steps (done), tokens_seen (tokens in the batches trained on),
--   lambda_schedule / act_bits_schedule {kind = constant|function|knob,
--   points = {{step, value}, ...} (11 samples over steps 1..steps done; schedules in
--   fractions sampled at the fraction each step had),
--   final}, loss_mix (the weights at the last step), final_metrics (ce, kl,
--   topk, cos, mag, rel, total, grad_norm of the last step), adapter
--   {rank, alpha, rotate_every} or false.
-- Sampling calls the schedules at other steps, so they must be pure
-- functions of the step (as every bitlab.schedule is).
-- Under mpirun -np N (bitlab.world_size() = N) every rank runs this loop on
-- the same global batch and trains its slice of batch / N sequences
-- (trainer:step shards and sums the gradients in rank order, so all ranks
-- take the same step: with one micro-batch per rank the very step of one
-- process with micro_batch = batch / N); batch must be a multiple of N x
-- micro_batch. The losses are means over the loss rows of the whole batch
-- (each micro-batch weighs by its share of them), however it is split.
-- Rank 0 writes the metrics, checkpoints, exports and progress
-- lines and has the dashboard; its knob, control-file and dashboard commands
-- reach every rank at the same step (bitlab.poll), and the step time and
-- stop() are rank 0's (bitlab.broadcast), so budgets end everywhere alike.
local schedule = require "bitlab.schedule"
local lossmix = require "bitlab.loss"
local budget_of = require "bitlab.budget".new

local function fmt(x)
  return string.format(math.abs(x) >= 1e-3 and "%.4f" or "%.3e", x)
end

local function schedule_kind(x)
  local t = type(x)
  if t == "number" then return "constant" end
  if t == "function" then return "function" end
  return "knob"
end

-- {kind, points = {{step, value}, ...} at 11 steps spread over 1..last, final};
-- fraction_at(step) is the budget's fraction before that step
local function sampled(x, last, final, integer, fraction_at)
  local points, prev = {}, nil
  for k = 0, 10 do
    local s = 1 + ((last - 1) * k) // 10
    if s ~= prev then
      local v = schedule.value(x, s, fraction_at(s))
      points[#points + 1] = {s, integer and math.tointeger(v) or v}
      prev = s
    end
  end
  return {kind = schedule_kind(x), points = points, final = final}
end

-- 95 -> "1m35s", 4000 -> "1h06m" (as the dashboard writes durations)
local function duration(sec)
  local t = math.floor(sec + 0.5)
  if t >= 3600 then return string.format("%dh%02dm", t // 3600, t // 60 % 60) end
  if t >= 60 then return string.format("%dm%02ds", t // 60, t % 60) end
  return string.format("%ds", t)
end

local function progress(step, steps, r)
  local parts = {steps and string.format("step %d/%d", step, steps) or string.format("step %d", step),
                 string.format("%.1f%%", 100 * r.progress)}
  if r.eta_seconds then parts[#parts + 1] = "ETA " .. duration(r.eta_seconds) end
  parts[#parts + 1] = "total " .. fmt(r.total)
  for _, k in ipairs{"ce", "kl", "topk", "cos", "mag", "rel"} do
    if r.weights[k] ~= 0 then parts[#parts + 1] = k .. " " .. fmt(r[k]) end
  end
  parts[#parts + 1] = "lr " .. string.format("%.2e", r.lr)
  parts[#parts + 1] = string.format("lambda %.2f", r.lambda)
  parts[#parts + 1] = string.format("a%d", r.act_bits)
  parts[#parts + 1] = string.format("|g| %.3g", r.grad_norm)
  parts[#parts + 1] = string.format("%.0f tok/s", r.tokens_per_s)
  if r.skipped_total > 0 then parts[#parts + 1] = "skipped " .. r.skipped_total end
  print(table.concat(parts, "  "))
  io.stdout:flush()
end

-- o[name] must be nil or an integer >= lo (error level 3: the caller of bitlab.train)
local function check_count(o, name, lo)
  local v = o[name]
  if v == nil then return end
  if math.type(v) == "float" and v == math.floor(v) and v >= math.mininteger and v < math.maxinteger then
    v = math.tointeger(v)
  end
  if math.type(v) ~= "integer" or v < lo then
    error(string.format("bitlab.train: option '%s' must be an integer >= %d, got %s", name, lo, tostring(o[name])), 3)
  end
end

-- The instability thresholds (see the header): defaults, overridden by o.instability.
local INSTABILITY = {grad_factor = 10, grad_steps = 3, loss_factor = 3, loss_window = 20,
                     loss_min_jump = 0.1, every = 50}

local LOSS_TERMS = {"total", "ce", "kl", "topk", "cos", "mag", "rel"}

local function median(h)
  local sorted = table.move(h, 1, #h, 1, {})
  table.sort(sorted)
  local n = #sorted
  return n % 2 == 1 and sorted[(n + 1) // 2] or (sorted[n // 2] + sorted[n // 2 + 1]) / 2
end

-- A function(step, r) that emits the instability warnings of o, or nil when off.
local function instability_watch(o)
  local cfg = o.instability
  if cfg == false then return nil end
  if cfg ~= nil and type(cfg) ~= "table" then
    error("bitlab.train: option 'instability' must be false or a table of thresholds, got " .. type(cfg), 3)
  end
  local th = {}
  for k, v in pairs(INSTABILITY) do
    local x = cfg and cfg[k]
    if x == nil then x = v end
    if type(x) ~= "number" or not (x > 0 and x < math.huge) then
      error(string.format("bitlab.train: option 'instability.%s' must be a positive number, got %s", k, tostring(x)), 3)
    end
    th[k] = x
  end
  local clip = o.clip or 1
  local over, hist, last_warn = 0, {}, {}
  for _, k in ipairs(LOSS_TERMS) do hist[k] = {} end

  local function warn(step, kind, fields, msg)
    if last_warn[kind] and step - last_warn[kind] < th.every then return end
    last_warn[kind] = step
    fields.kind, fields.message = kind, msg
    bitlab.event("warning", fields)
    if not bitlab.dashboard then
      io.stderr:write("bitlab: warning: step " .. step .. ": " .. msg .. "\n")
      io.stderr:flush()
    end
  end

  return function(step, r)
    if r.skipped then return end
    local g = r.grad_norm
    if clip > 0 and g > th.grad_factor * clip then over = over + 1 else over = 0 end
    if over >= th.grad_steps then
      warn(step, "grad_norm",
        {grad_norm = g, clip = clip, factor = g / clip, steps = over, lambda = r.lambda, lr = r.lr},
        string.format("gradient norm %.3g is %.0fx the clip %g for %d steps in a row (lambda %.2f, "
          .. "lr %.2e): the updates are clipped hard; lower lr, ramp lambda more slowly, or raise "
          .. "clip if norms this size are expected", g, g / clip, clip, over, r.lambda, r.lr))
    end
    -- the total and each loss term the mix weighs: a jump of the KL alone (lambda
    -- reaching 1) can hide in a total the CE dominates
    local worst
    for _, k in ipairs(LOSS_TERMS) do
      local v, h = r[k], hist[k]
      if v == v and v > -math.huge and v < math.huge then
        if (k == "total" or (r.weights and (r.weights[k] or 0) ~= 0)) and #h >= math.min(5, th.loss_window) then
          local med = median(h)
          local ratio = v / math.max(med, 1e-30)
          if v > th.loss_factor * med and v - med > th.loss_min_jump and (not worst or ratio > worst.ratio) then
            worst = {term = k, value = v, median = med, window = #h, ratio = ratio}
          end
        end
        h[#h + 1] = v
        if #h > th.loss_window then table.remove(h, 1) end
      end
    end
    if worst then
      warn(step, "loss_jump",
        {term = worst.term, value = worst.value, total = r.total, median = worst.median,
         window = worst.window, lambda = r.lambda, lr = r.lr},
        string.format("%s loss %.4g jumped to %s its median %.4g over the last %d steps "
          .. "(lambda %.2f, lr %.2e): lower lr, ramp lambda more slowly (a schedule rather than "
          .. "a jump to 1), or add LR warmup", worst.term, worst.value,
          worst.ratio < 10 and string.format("%.1fx", worst.ratio) or string.format("%.0fx", math.min(worst.ratio, 1e9)), worst.median,
          worst.window, r.lambda, r.lr))
    end
  end
end

-- The default folder of the held-out teacher cache.
local function default_eval_cache()
  local base = os.getenv("XDG_CACHE_HOME")
  if not base or base == "" then base = (os.getenv("HOME") or ".") .. "/.cache" end
  return base .. "/bitlab/eval-teacher"
end

-- o.eval checked and completed (nil when absent).
local function eval_plan(o)
  local e = o.eval
  if e == nil then return nil end
  if type(e) ~= "table" or e.data == nil then
    error("bitlab.train: option 'eval' must be a table with data = a .txt/.jsonl path or a Dataset", 3)
  end
  local every = e.every -- nil: at every tenth of the budget
  if every ~= nil and (type(every) ~= "number" or every ~= math.floor(every) or every < 1) then
    error("bitlab.train: option 'eval.every' must be an integer >= 1, got " .. tostring(e.every), 3)
  end
  local best = e.best
  if best == nil then best = o.checkpoint and (o.checkpoint .. ".best") or false end
  if best ~= false and type(best) ~= "string" then
    error("bitlab.train: option 'eval.best' must be a path or false, got " .. type(best), 3)
  end
  local cache = e.teacher_cache
  if cache == nil then cache = default_eval_cache() end
  local tokens = e.tokens -- checked by bitlab.eval; here so a typo fails before training
  if tokens ~= nil and (math.type(tokens) ~= "integer" or tokens < 1) then
    error("bitlab.train: option 'eval.tokens' must be an integer >= 1, got " .. tostring(e.tokens), 3)
  end
  return {data = e.data, every = every and math.tointeger(every), seq = e.seq, max_examples = e.max_examples,
          tokens = tokens,
          prompts = e.prompts, max_tokens = e.max_tokens, teacher_cache = cache or nil, best = best or nil}
end

return function(o)
  if type(o) ~= "table" then
    error("bad argument #1 to 'train' (table of options expected, got " .. type(o) .. ")", 2)
  end
  local model, data = o.model, o.data
  assert(model and data, "bitlab.train: model and data are required")
  budget_of(o) -- the budget's options checked before anything is built
  for _, k in ipairs{"batch", "seq", "micro_batch", "rotate_every", "checkpoint_every",
                     "generate_every", "progress_every", "max_tokens", "topk_k"} do
    check_count(o, k, k == "topk_k" and 0 or 1)
  end
  for _, k in ipairs{"lr", "lambda", "act_bits"} do -- a number, a schedule (function) or a knob
    local t = type(o[k])
    if o[k] ~= nil and t ~= "number" and t ~= "function" and not (t == "userdata" and o[k].value) then
      error(string.format("bitlab.train: option '%s' must be a number, a schedule or a knob, got %s", k, t), 2)
    end
  end
  local watch = instability_watch(o)
  local B = o.batch or 1
  local world = bitlab.world_size()
  if B % world ~= 0 then
    error(string.format("bitlab.train: option 'batch' (%d) must be a multiple of the %d processes "
      .. "(mpirun -np %d): each trains batch / %d sequences of every step", B, world, world, world), 2)
  end
  if world > 1 and o.micro_batch and (B // world) % o.micro_batch ~= 0 then
    error(string.format("bitlab.train: option 'micro_batch' (%d) must divide each process's %d "
      .. "sequences (batch %d over %d processes)", o.micro_batch, B // world, B, world), 2)
  end
  local mt = getmetatable(data)
  local corpus = type(mt) == "table" and mt.__name == "bitlab.Corpus"
  local teacher_fed = type(mt) == "table" and mt.__name == "bitlab.TeacherSource"
  local T = o.seq or (corpus and data:seq()) or data:max_len()
  if teacher_fed and o.trace then
    error("bitlab.train: a teacher trace needs the bitlab.Dataset it was recorded on, not a teacher source", 2)
  end
  if corpus and o.trace then
    error("bitlab.train: a teacher trace needs the bitlab.Dataset it was recorded on, not a corpus", 2)
  end
  local adapter = o.adapter
  if adapter == nil then adapter = {rank = 16, alpha = 32, seed = 1} end
  local student = o.student or bitlab.student{
    model = model, lambda = 1, act_bits = 8,
    subln = o.subln, post_attn_norm = o.post_attn_norm, dense = o.dense,
  }
  if adapter and student:n_adapters() == 0 then
    student:add_adapter{rank = adapter.rank, alpha = adapter.alpha, seed = adapter.seed or 1}
  end
  local mix = o.loss or lossmix.presets.kd_cos
  if o.knobs ~= false then
    -- a teacher trace fixes tau and holds no full logits (and maybe no hidden
    -- states): those knobs are not offered, so no knob can ask for what the
    -- run cannot serve
    local fixed
    if o.trace then
      local t = type(o.trace) == "string" and bitlab.load_trace(o.trace) or o.trace
      fixed = {tau = true, kl = true, rel = true}
      if not t:info().hidden then fixed.cos, fixed.mag = true, true end
    end
    mix = lossmix.knobs(mix, nil, fixed)
  end
  local lr_scale = bitlab.knob{name = "lr_scale", value = 1, min = 0, max = 100, step = 0.1}
  local trainer = o.trainer or bitlab.trainer{
    student = student, batch = o.micro_batch or B // world, seq = T,
    k = o.topk_k or (o.trace == nil and (mix.topk ~= nil and 32 or 0) or nil),
    trace = o.trace, data = o.trace and data or nil,
    clip = o.clip or 1, weight_decay = o.weight_decay or 0,
    beta1 = o.beta1 or 0.9, beta2 = o.beta2 or 0.95,
    integer_forward = o.integer_forward or false, lambda_acts = o.lambda_acts,
    relation_layer = o.relation_layer or (mix.rel ~= nil and model:info().n_layers or nil),
  }
  local ctx = {student = student, trainer = trainer, data = data, model = model}

  local start = 1
  local resume = o.resume or bitlab.resume_path
  -- the manifest, budget state and best held-out evaluation of the run resumed from
  local resumed, resume_budget, resumed_best
  if resume then
    local st = trainer:load(resume)
    start = st.step + 1
    data:seek(st.data)
    resumed = st.manifest
    -- checkpoints from before budgets keep tokens_seen in the manifest only
    resume_budget = st.budget or {tokens_seen = resumed and resumed.tokens_seen or 0, elapsed = 0}
    resumed_best = st.best_eval
    print(string.format("resumed from %s at step %d", resume, st.step))
  end

  local budget = budget_of(o, resume_budget)
  local steps = budget.steps
  local ev = eval_plan(o)
  if o.export ~= nil and (type(o.export) ~= "table" or type(o.export.out) ~= "string") then
    error("bitlab.train: option 'export' must be a table of bitlab.export options with out = a path", 2)
  end
  local evals, best = {}, resumed_best -- held-out evaluations, the best so far
  local last, done, interrupted, ended_by, saved_at, evaluated_at = nil, start - 1, false, nil, nil, nil
  local eval_tenth = math.floor(10 * budget:fraction(done)) -- the tenth of the budget last evaluated
  local fractions = {} -- the budget's fraction before each step of this session
  local function fraction_at(s)
    -- steps before a resume: the fraction grew about linearly with the steps
    return fractions[s] or (done > 0 and budget:fraction(done) * (s - 1) / done or 0)
  end

  local function manifest()
    local prev = resumed or {}
    local metrics = prev.final_metrics
    if last then
      metrics = {}
      for _, k in ipairs{"ce", "kl", "topk", "cos", "mag", "rel", "total", "grad_norm"} do metrics[k] = last[k] end
    end
    local n = math.max(done, 1)
    return {
      base_model = model:info().path, steps = done, tokens_seen = budget.tokens_seen,
      lambda_schedule = sampled(o.lambda or 1, n, last and last.lambda or student:lambda(), false, fraction_at),
      act_bits_schedule = sampled(o.act_bits or 8, n, last and last.act_bits or student:act_bits(), true,
                                  fraction_at),
      loss_mix = last and last.weights or prev.loss_mix, final_metrics = metrics,
      adapter = adapter and {rank = adapter.rank, alpha = adapter.alpha, rotate_every = o.rotate_every} or false,
    }
  end

  local save_opts = o.checkpoint_frozen_adapters and {frozen_adapters = o.checkpoint_frozen_adapters} or nil
  -- what a checkpoint keeps besides the trainer: where the run is
  local function state_at(step)
    return {step = step, data = data:position(), manifest = manifest(), budget = budget:state(),
            best_eval = best}
  end

  -- a held-out evaluation after `step`: an "eval" record, and the best
  -- checkpoint when its KL is the lowest so far
  local function evaluate(step)
    local rep = bitlab.eval{student = student, data = ev.data, seq = ev.seq, max_examples = ev.max_examples,
                            tokens = ev.tokens,
                            prompts = ev.prompts, max_tokens = ev.max_tokens, teacher_cache = ev.teacher_cache,
                            step = step}
    local e = {step = step, kl = rep.kl, perplexity_ratio = rep.perplexity_ratio,
               student_perplexity = rep.student_perplexity, teacher_perplexity = rep.teacher_perplexity,
               agreement = rep.agreement, agreement_top5 = rep.agreement_top5, scored_tokens = rep.scored_tokens}
    evals[#evals + 1] = e
    if not bitlab.dashboard then
      print(string.format("eval at step %d: KL %.4f  ppl %.4g (teacher %.4g)  top-1 %.1f%%  top-5 %.1f%%",
        step, e.kl, e.student_perplexity, e.teacher_perplexity, 100 * e.agreement, 100 * e.agreement_top5))
    end
    if rep.kl == rep.kl and (not best or rep.kl < best.kl) then
      best = {step = step, kl = rep.kl, path = ev.best}
      if ev.best then trainer:save(ev.best, state_at(step), save_opts) end
    end
  end

  local function save(step)
    if o.checkpoint then
      trainer:save(o.checkpoint, state_at(step), save_opts)
    end
  end

  -- the dashboard (all of this is a no-op in headless runs)
  local max_tokens = o.max_tokens or 64
  local teacher_ids = o.teacher_ids or {}
  local function show_generation(i, p)
    if not teacher_ids[p] then
      local _, ids = model:generate(p, {max_tokens = max_tokens})
      teacher_ids[p] = ids
    end
    local text, ids = student:generate(p, {max_tokens = max_tokens})
    bitlab.show_generation{index = i, prompt = p, model = model, teacher = teacher_ids[p], student = ids}
    return text
  end
  local function info()
    local sm, tm = student:memory(), trainer:memory()
    bitlab.info{model = model:info().name, total_steps = steps, budget = budget:describe(),
                adapters = student:n_adapters(),
                rank = adapter and adapter.rank or nil,
                -- gradients count with the optimizer: both exist only for training
                mem = {weights = sm.frozen_weights, adapters = sm.adapters_frozen + sm.adapters_trainable,
                       optimizer = sm.optimizer + sm.grads, activations = tm.activations + tm.scratch,
                       dense = sm.dense}}
  end
  -- under mpirun rank 0's dashboard commands run on every rank (l_dash.c): all register them
  if bitlab.dashboard or world > 1 then
    bitlab.prompts(o.prompts)
    info()
    local path = o.checkpoint or ((bitlab.script:match("([^/]+)%.lua$") or "run") .. ".ckpt")
    bitlab.on_command{
      generate = show_generation,
      save = function()
        trainer:save(path, state_at(done), save_opts)
        saved_at = done
      end,
      rotate = function()
        if not adapter then
          bitlab.event("rotation_refused", {text = "this run trains no adapter"})
          return
        end
        -- a seed of its own, unlike any scheduled rotation's
        student:rotate{rank = adapter.rank, alpha = adapter.alpha, seed = (adapter.seed or 1) + 1000 * (done + 1) + 1}
        info()
      end,
    }
  end

  local tail = 0 -- the previous step's work after its record (generations, checkpoints)
  local step = start
  while true do
    ended_by = budget:over(step)
    if ended_by then break end
    if not bitlab.poll(step) then
      interrupted = true
      break
    end
    local t0 = bitlab.clock() -- after poll: time paused there is not the step's
    if o.stop and bitlab.broadcast(o.stop() and true or false) then break end
    local frac = budget:fraction(step - 1)
    fractions[step] = frac
    if o.rotate_every and adapter and step > 1 and (step - 1) % o.rotate_every == 0 then
      -- the seed depends on the step only, so a resumed run draws the same adapter
      student:rotate{rank = adapter.rank, alpha = adapter.alpha, seed = (adapter.seed or 1) + 1000 * step}
      if bitlab.dashboard then info() end
    end
    local lam = schedule.value(o.lambda or 1, step, frac)
    local bits = math.tointeger(schedule.value(o.act_bits or 8, step, frac))
    student:set_lambda(lam)
    student:set_act_bits(bits)
    local lr = schedule.value(o.lr or 1e-4, step, frac) * lr_scale.value
    local w = lossmix.at(mix, step, frac)
    local opts = {lr = lr}
    for k, v in pairs(w) do opts[k] = v end
    local r = trainer:step(data:batch(B, T), opts)
    r.step, r.lambda, r.lr, r.act_bits, r.adapter, r.weights = step, lam, lr, bits, student:n_adapters(), w
    if corpus then
      local cs = data:stats()
      r.corpus = {documents = cs.documents, tokens = cs.tokens, tokens_per_s = cs.tokens_per_s,
                  epoch = cs.epoch, stall_seconds = cs.stall_seconds}
    elseif teacher_fed then
      local ts = data:stats()
      r.teacher_data = {examples = ts.examples, served = ts.served, answers = ts.total, kept = ts.kept,
                        rejected = ts.rejected_total, teacher_tokens = ts.teacher_tokens,
                        tokens_per_s = ts.tokens_per_s, epoch = ts.epoch}
    end
    local t_log = bitlab.clock()
    r.step_seconds = bitlab.broadcast(t_log - t0 + tail) -- rank 0's clock: one budget for all
    budget:record(r.tokens, r.step_seconds)
    r.progress, r.eta_seconds = budget:fraction(step), budget:eta(step)
    bitlab.log(r)
    if watch then watch(step, r) end
    last, done = r, step
    if o.on_step then o.on_step(step, r, ctx) end
    if not bitlab.dashboard and (step % (o.progress_every or 10) == 0 or budget:over(step + 1) or step == start) then
      progress(step, steps, r)
    end
    if o.checkpoint_every and step % o.checkpoint_every == 0 then
      save(step)
      saved_at = step
    end
    if ev then
      local tenth = math.floor(10 * r.progress + 1e-9) -- 0.3 * 10 may round below 3
      if budget:over(step + 1) or (ev.every and step % ev.every == 0) or (not ev.every and tenth > eval_tenth) then
        evaluate(step)
        evaluated_at, eval_tenth = step, tenth
      end
    end
    if o.generate_every and o.prompts and step % o.generate_every == 0 then
      if bitlab.dashboard then
        for i, p in ipairs(bitlab.prompts()) do -- the user's edits included
          bitlab.event("generation", {prompt = p, text = show_generation(i, p)})
        end
      else
        for _, p in ipairs(o.prompts) do
          local text = student:generate(p, {max_tokens = max_tokens})
          print(string.format("[step %d] %s\n  -> %s", step, p, text))
          bitlab.event("generation", {prompt = p, text = text})
        end
      end
    end
    tail = bitlab.clock() - t_log
    step = step + 1
  end
  -- a run ended by stop() is evaluated where it stopped too (Ctrl-C is not:
  -- the user asked to leave)
  if ev and not interrupted and done >= start and evaluated_at ~= done then evaluate(done) end
  if o.checkpoint and done >= start and saved_at ~= done then save(done) end
  local exported
  if o.export and ended_by and done >= 1 and bitlab.rank() == 0 then
    local x = {student = student, manifest = manifest()}
    for k, v in pairs(o.export) do x[k] = v end
    exported = bitlab.export(x)
    print("exported the student to " .. exported.path)
  end
  if interrupted then
    print(string.format("stopped at step %d%s", done,
      o.checkpoint and ("; checkpoint " .. o.checkpoint .. " (resume with --resume)") or ""))
  elseif last then
    print(string.format("done: %d steps, %d tokens%s, final total %s (ce %s, kl %s, cos %s)", done,
      budget.tokens_seen, ended_by and ended_by ~= "steps" and (" (" .. ended_by .. " budget reached)") or "",
      fmt(last.total), fmt(last.ce), fmt(last.kl), fmt(last.cos)))
  end
  return {student = student, trainer = trainer, last = last, step = done, interrupted = interrupted,
          ended_by = ended_by, evals = evals, best = best, export = exported, manifest = manifest()}
end
