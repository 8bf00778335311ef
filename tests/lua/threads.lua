-- threads.lua - the run test_threads_bitexact.py repeats under 1, 2 and 3
-- threads: batches big enough (4 x 64 rows of a 256-wide model) that every
-- op splits over the worker pool, λ 0.5 → 1, CE + KL + top-K + cosine, one
-- rotation, a checkpoint every step into TMPDIR/threads.ckpt.
-- bitlab tests/lua/threads.lua [--resume CKPT] -- MODEL TMPDIR STEPS
local m = bitlab.load_model(arg[1])
local texts = {}
for i = 1, 9 do texts[i] = string.rep("alpha beta gamma delta epsilon ", 2 + i) .. i end
local data = bitlab.dataset{model = m, text = texts, seed = 5}
bitlab.train{
  model = m, data = data, steps = tonumber(arg[3]), batch = 4, seq = 64,
  adapter = {rank = 8, alpha = 16, seed = 2}, rotate_every = 3,
  lr = 3e-3, lambda = bitlab.schedule.linear(0.5, 1, 4), act_bits = 8,
  loss = {ce = 1, kl = 1, topk = 0.5, k = 8, cos = 0.5, tau = 2},
  checkpoint = arg[2] .. "/threads.ckpt", checkpoint_every = 1, progress_every = 10,
}
