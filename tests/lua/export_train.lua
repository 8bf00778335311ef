-- export_train.lua - trains a tiny student for a few steps with a large LR
-- (so its adapters are far from zero), checkpoints it, and exports it from
-- the script (bitlab.export with the run's manifest). Used by
-- tests/py/test_export_gguf.py.
-- bitlab tests/lua/export_train.lua -- MODEL CKPT OUT.gguf [ACT_BITS] [SUBLN]
local model = bitlab.load_model(arg[1])
local texts = {}
for i = 1, 6 do texts[i] = string.rep("the ternary student learns ", i) .. "from tokens " .. i end
local data = bitlab.dataset{model = model, text = texts, seed = 5}
local subln = arg[5] == "subln"
local run = bitlab.train{
  model = model, data = data, steps = 6, batch = 2, seq = 40,
  adapter = {rank = 4, alpha = 8, seed = 7}, rotate_every = 4,
  lr = 5e-2, lambda = bitlab.schedule.linear(0.5, 1, 4),
  act_bits = tonumber(arg[4] or 8), subln = subln,
  loss = {ce = 1, kl = 1, cos = 0.5, tau = 2},
  checkpoint = arg[2], progress_every = 100,
}
assert(run.manifest.steps == 6 and run.manifest.tokens_seen > 0, "the run's manifest")
local ok, r = pcall(bitlab.export, {student = run.student, out = arg[3],
                                    manifest = {script_note = "from export_train.lua", steps = run.manifest.steps,
                                                tokens_seen = run.manifest.tokens_seen,
                                                lambda_schedule = run.manifest.lambda_schedule}})
if not ok then
  print("export error: " .. tostring(r))
  os.exit(3)
end
print("exported " .. r.path .. " manifest " .. r.manifest)
