-- error_after_ckpt.lua - a script error at step 5 after checkpoints at
-- steps 2 and 4: bitlab must report it with file:line and a traceback, exit
-- 1, and leave the step-4 checkpoint valid.
-- bitlab tests/lua/error_after_ckpt.lua -- MODEL TMPDIR
local m = bitlab.load_model(arg[1])
local data = bitlab.dataset{model = m, text = {"one two three four five six", "seven eight nine ten"}}
bitlab.train{
  model = m, data = data, steps = 10, lr = 1e-3,
  checkpoint = arg[2] .. "/err.ckpt", checkpoint_every = 2, progress_every = 100,
  on_step = function(step)
    if step == 5 then error("boom at step " .. step) end
  end,
}
