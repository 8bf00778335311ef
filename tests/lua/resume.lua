-- resume.lua - the run the resume tests repeat: shuffled data, batch 2,
-- warm-up + cosine LR, an adapter rotation at step 8, a checkpoint every 10
-- steps. Run once for 20 steps, once for 10, then resumed to 20 with
-- --resume: steps 11..20 must log identical losses.
-- bitlab tests/lua/resume.lua [--resume CKPT] -- MODEL TMPDIR STEPS
local m = bitlab.load_model(arg[1])
local texts = {}
for i = 1, 7 do texts[i] = string.rep("alpha beta gamma ", i) .. "delta " .. i end
local data = bitlab.dataset{model = m, text = texts, seed = 3}
bitlab.train{
  model = m, data = data, steps = tonumber(arg[3]), batch = 2, seq = 48,
  adapter = {rank = 4, alpha = 8, seed = 11}, rotate_every = 7,
  lr = bitlab.schedule.warmup_cosine{peak = 5e-3, warmup = 3, total = 20},
  lambda = bitlab.schedule.linear(0.5, 1, 10), act_bits = 8,
  loss = {ce = 1, kl = 1, cos = 0.5, tau = 2},
  checkpoint = arg[2] .. "/resume.ckpt", checkpoint_every = 10, progress_every = 5,
}
