-- knob_control.lua - a knob changed through the --control file takes effect
-- at the next step. At step 3 the script itself writes the control file
-- (as a user would), then checks steps 3 and 4 saw the old and new values.
-- bitlab tests/lua/knob_control.lua --control FILE -- MODEL TMPDIR FILE
local check = require "check"
local m = bitlab.load_model(arg[1])
local control = arg[3]
local data = bitlab.dataset{model = m, text = {"one two three four five six", "seven eight nine ten"}}
local seen = {}
bitlab.train{
  model = m, data = data, steps = 6, lr = 1e-3, loss = {ce = 1, kl = 1},
  progress_every = 100,
  on_step = function(step, r)
    seen[step] = {kl = r.weights.kl, lr = r.lr}
    if step == 3 then
      local f = assert(io.open(control, "w"))
      f:write("# knobs\nw_kl = 0\nlr_scale=0.5\nbogus=1\nw_ce=abc\nw_cos=1e9\n")
      f:close()
    end
  end,
}
check.eq(seen[3].kl, 1, "step 3 ran with the old weight")
check.eq(seen[4].kl, 0, "step 4 ran with the weight from the control file")
check.eq(seen[4].lr, seen[3].lr * 0.5, "lr_scale applied at step 4")
check.eq(bitlab.knobs().w_cos, nil, "a knob the loss mix lacks stays unknown")
check.done()
