-- dash_live.lua - the run tests/py/test_dashboard_live.py watches in the
-- dashboard: bitlab.train on a tiny model with two prompts, knobs w_ce and
-- w_kl, a checkpoint path, and steps paced so the test can read the screen
-- between them (a tiny model steps in milliseconds).
-- bitlab tests/lua/dash_live.lua --log F -- MODEL CKPT [STEPS] [SECONDS_PER_STEP]
local m = bitlab.load_model(arg[1])
local steps = math.tointeger(tonumber(arg[3] or 100000))
local pace = tonumber(arg[4] or 0.2)
local data = bitlab.dataset{model = m, text = {"one two three four five six", "seven eight nine ten"}}
print("dash_live: model " .. arg[1])
bitlab.train{
  model = m, data = data, steps = steps, lr = 1e-3, loss = {ce = 1, kl = 1},
  adapter = {rank = 4, alpha = 8, seed = 1},
  checkpoint = arg[2],
  prompts = {"one two", "seven eight"}, max_tokens = 12,
  -- sleep(1) burns no CPU while waiting (system() ignores SIGINT meanwhile,
  -- so Ctrl-C is for unpaced runs)
  on_step = pace > 0 and function() os.execute("sleep " .. pace) end or nil,
}
