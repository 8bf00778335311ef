-- nonfinite.lua - the non-finite guard from Lua: on a model with a NaN
-- weight (tests/py/test_lua_api.py poisons one) every step is skipped and
-- counted, never applied, and each nonfinite_skip event carries the
-- trainer's step although no bitlab.poll ran. arg[1] = the poisoned model.
local check = require "check"
local m = bitlab.load_model(arg[1])
local ds = bitlab.dataset{model = m, text = {"hello world one two three"}}
local st = bitlab.student{model = m}
st:add_adapter{rank = 2}
local tr = bitlab.trainer{student = st, batch = 1, seq = ds:max_len()}
local r
for _ = 1, 3 do r = tr:step(ds:batch(1)) end
check.ok(r.skipped, "a step on non-finite losses is skipped")
check.eq(r.skipped_total, 3, "skipped steps are counted")
check.eq(select(2, tr:steps()), 3, "the trainer counts them")
check.done()
