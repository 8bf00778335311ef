-- mpi_train.lua - the run test_mpi_train.py repeats on one and on two
-- processes: the resume tests' shuffled data and schedules, batch 4 in
-- micro-batches of MICRO (one process: 2; two processes: 2 each, their
-- slices of the same global batch), an adapter rotation every 3 steps, a
-- checkpoint every step. Every rank appends one line per step to
-- TMPDIR/rank<R>.txt (step, lr, the knobs, losses and gradient norm with
-- every bit: %a, and values bitlab.broadcast brought from rank 0) so the
-- test can see that all ranks took the same step;
-- FAIL_AT makes rank 1 raise a script error at that step.
-- [mpirun -np N] bitlab tests/mpi/mpi_train.lua [--resume CKPT] [--control F]
--     -- MODEL TMPDIR STEPS MICRO [FAIL_AT [SLEEP]]
local m = bitlab.load_model(arg[1])
local dir, steps, micro = arg[2], math.tointeger(tonumber(arg[3])), math.tointeger(tonumber(arg[4]))
local fail_at = tonumber(arg[5] or "0")
local sleep = tonumber(arg[6] or "0")
local texts = {}
for i = 1, 9 do texts[i] = string.rep("alpha beta gamma ", i) .. "delta " .. i end
local data = bitlab.dataset{model = m, text = texts, seed = 3}
local rank = bitlab.rank()
local out = assert(io.open(string.format("%s/rank%d.txt", dir, rank), "a"))
bitlab.train{
  model = m, data = data, steps = steps, batch = 4, micro_batch = micro, seq = 48,
  adapter = {rank = 4, alpha = 8, seed = 11}, rotate_every = 3,
  lr = bitlab.schedule.warmup_cosine{peak = 5e-3, warmup = 3, total = 24},
  lambda = bitlab.schedule.linear(0.5, 1, 10), act_bits = 8,
  loss = {ce = 1, kl = 1, cos = 0.5, tau = 2},
  checkpoint = dir .. "/run.ckpt", checkpoint_every = 1,
  progress_every = 1,
  on_step = function(step, r)
    local knobs = bitlab.knobs()
    -- rank 0's values on every rank: the lines stay equal only if they arrive whole
    local b = bitlab.broadcast{r = rank + step, x = (rank + step) / 3, s = "rank " .. rank}
    local n = bitlab.broadcast((rank + step) / 7)
    out:write(string.format("step %d world %d lr %a lr_scale %a w_ce %a total %a ce %a kl %a cos %a grad_norm %a adapters %d bcast %d %a %s %a\n",
      step, bitlab.world_size(), r.lr, knobs.lr_scale, knobs.w_ce, r.total, r.ce, r.kl, r.cos, r.grad_norm, r.adapter,
      b.r, b.x, b.s:gsub(" ", "_"), n))
    out:flush()
    if fail_at > 0 and step == fail_at and rank == 1 then error("rank 1 fails on purpose at step " .. step) end
    if sleep > 0 then
      local t = bitlab.clock()
      while bitlab.clock() - t < sleep do end
    end
  end,
}
out:close()
