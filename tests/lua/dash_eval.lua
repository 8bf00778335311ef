-- dash_eval.lua - the run tests/py/test_dashboard_eval.py watches: step
-- records of a budgeted loop (progress, eta_seconds; no total_steps), a
-- budget in the header, and one held-out evaluation, each phase held on
-- screen until the test creates the file GO.N (bitlab.poll keeps the
-- dashboard's keys served meanwhile).
-- bitlab tests/lua/dash_eval.lua --log F -- MODEL HELDOUT DIR
local m = bitlab.load_model(arg[1])
bitlab.info{budget = "30 min"}
local function hold(n, at)
  local f = io.open(arg[3] .. "/GO." .. n)
  while not f do
    bitlab.poll(at)
    os.execute("sleep 0.05")
    f = io.open(arg[3] .. "/GO." .. n)
  end
  f:close()
end
local function step(i)
  bitlab.poll(i)
  bitlab.log{step = i, total = 5 - i / 10, kl = 4 - i / 10, progress = i / 10, eta_seconds = 600 - 60 * i}
end
for i = 1, 3 do step(i) end
hold(1, 3)
step(4)
bitlab.eval{model = m, data = arg[2], seq = 16, step = 4}
hold(2, 4)
