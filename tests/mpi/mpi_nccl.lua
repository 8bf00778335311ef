-- mpi_nccl.lua - the run test_mpi_nccl.py repeats on one and on two
-- processes with --device cuda on the emulated device: batch 4 in
-- micro-batches of 2 (one process: two of them; two processes: one each,
-- their slices of the same global batch), a checkpoint at the end. Every
-- rank writes TMPDIR/rank<R>.txt: its device's name, then one line per step
-- (losses and gradient norm with every bit, %a, and the bytes of the step's
-- gradient accumulator and host copy, trainer:memory().grad_accum).
-- [mpirun -np N] bitlab tests/mpi/mpi_nccl.lua --device cuda -- MODEL TMPDIR STEPS
local m = bitlab.load_model(arg[1])
local dir, steps = arg[2], math.tointeger(tonumber(arg[3]))
local texts = {}
for i = 1, 9 do texts[i] = string.rep("alpha beta gamma ", i) .. "delta " .. i end
local data = bitlab.dataset{model = m, text = texts, seed = 3}
local rank = bitlab.rank()
local out = assert(io.open(string.format("%s/rank%d.txt", dir, rank), "w"))
out:write(string.format("device %s %s\n", bitlab.device().name, bitlab.device().device))
bitlab.train{
  model = m, data = data, steps = steps, batch = 4, micro_batch = 2, seq = 16,
  adapter = {rank = 4, alpha = 8, seed = 11},
  lr = bitlab.schedule.warmup_cosine{peak = 5e-3, warmup = 1, total = 8},
  lambda = bitlab.schedule.linear(0.5, 1, 4), act_bits = 8,
  loss = {ce = 1, kl = 1, cos = 0.5, tau = 2},
  checkpoint = dir .. "/run.ckpt", checkpoint_every = steps,
  progress_every = 1,
  on_step = function(step, r, ctx)
    out:write(string.format("step %d total %a ce %a kl %a cos %a grad_norm %a grad_accum %d\n",
      step, r.total, r.ce, r.kl, r.cos, r.grad_norm, ctx.trainer:memory().grad_accum))
    out:flush()
  end,
}
out:close()
