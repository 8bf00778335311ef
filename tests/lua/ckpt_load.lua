-- ckpt_load.lua - loads a checkpoint into a fresh student (as ckpt_layout.lua
-- builds it); with "save", writes it back to the same path.
-- bitlab tests/lua/ckpt_load.lua -- MODEL CKPT [save]
local m = bitlab.load_model(arg[1])
local st = bitlab.student{model = m, lambda = 0.5, act_bits = 8, dense = true}
st:add_adapter{rank = 4, seed = 1}
local tr = bitlab.trainer{student = st, batch = 2, seq = 32, lr = 2e-2, ce = 1}
tr:load(arg[2])
if arg[3] == "save" then tr:save(arg[2]) end
print("loaded")
