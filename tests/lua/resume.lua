-- resume.lua - the run the resume tests repeat: shuffled data, batch 2,
-- warm-up + cosine LR, an adapter rotation at step 8, a checkpoint every
-- EVERY steps (default 10) into TMPDIR/resume.ckpt. test_lua_api.py runs it
-- once for 20 steps, once for 10, then resumed to 20 with --resume: steps
-- 11..20 must log identical losses; test_resume_kill.py and
-- test_device_run.py checkpoint every step and resume after a SIGKILL or on
-- another device.
-- bitlab tests/lua/resume.lua [--resume CKPT] -- MODEL TMPDIR STEPS [EVERY]
local m = bitlab.load_model(arg[1])
local texts = {}
for i = 1, 7 do texts[i] = string.rep("alpha beta gamma ", i) .. "delta " .. i end
local data = bitlab.dataset{model = m, text = texts, seed = 3}
bitlab.train{
  model = m, data = data, steps = tonumber(arg[3]), batch = 2, seq = 48,
  adapter = {rank = 4, alpha = 8, seed = 11}, rotate_every = 7,
  lr = bitlab.schedule.warmup_cosine{peak = 5e-3, warmup = 3, total = 24},
  lambda = bitlab.schedule.linear(0.5, 1, 10), act_bits = 8,
  loss = {ce = 1, kl = 1, cos = 0.5, tau = 2},
  checkpoint = arg[2] .. "/resume.ckpt", checkpoint_every = math.tointeger(tonumber(arg[4] or 10)),
  progress_every = 5,
}
