-- dist_single.lua - the multi-process API in one process (test_dist_single.py):
-- rank 0 of 1, bitlab.broadcast gives back what it is given (every kind),
-- refuses what cannot travel by name, and trainer:memory() reports the
-- micro-batch accumulator once a step has more than one micro-batch.
-- bitlab tests/lua/dist_single.lua -- MODEL
assert(bitlab.rank() == 0, "rank " .. tostring(bitlab.rank()))
assert(bitlab.world_size() == 1, "world_size " .. tostring(bitlab.world_size()))
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b and math.type(a) == math.type(b) end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
for _, v in ipairs{0.1 + 0.2, 7, -0.0, 1e308, "text", true, false, {a = 1, b = {2.5, "x"}}} do
  assert(same(bitlab.broadcast(v), v), "broadcast changed " .. tostring(v))
end
assert(bitlab.broadcast(nil) == nil)
local ok, err = pcall(bitlab.broadcast, function() end)
assert(not ok and err:find("bad argument #1") and err:find("got function"), err)
print("BROADCAST ok")

local m = bitlab.load_model(arg[1])
local st = bitlab.student{model = m, lambda = 1, act_bits = 8}
st:add_adapter{rank = 2, alpha = 4, seed = 1}
local tr = bitlab.trainer{student = st, batch = 1, seq = 16}
local data = bitlab.dataset{model = m, text = {"alpha beta gamma delta", "one two three four five"}, seed = 1}
assert(tr:memory().grad_accum == 0, "no accumulator before a step")
tr:step(data:batch(1, 16))
assert(tr:memory().grad_accum == 0, "one micro-batch needs no accumulator")
tr:step(data:batch(2, 16))
print("GRAD_ACCUM " .. math.tointeger(tr:memory().grad_accum))
