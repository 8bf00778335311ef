-- device.lua - bitlab.device() and the run's fixed backend (driven by
-- tests/py/test_device_option.py):
--
--   bitlab device.lua --headless [--device D] [--log FILE] -- [MODEL]
--
-- Checks the table bitlab.device() returns (name, device, memory with four
-- non-negative integer byte counts, peak >= live; no free/total figure on
-- the CPU, a plausible one on CUDA) and that it refuses arguments (a script
-- cannot switch devices). With MODEL it then trains two steps with
-- bitlab.train, so that the metrics stream gets step records (which carry
-- device_mem). Prints one line
--   DEVICE name=<name> device=<device> live=<n> peak=<n> device_free=<n> device_total=<n>
-- and "all checks passed".
local model_path = arg[1]

local function check_table(d)
  assert(type(d) == "table", "bitlab.device() returns a table, got " .. type(d))
  assert(d.name == "cpu" or d.name == "cuda", "name is cpu or cuda, got " .. tostring(d.name))
  assert(type(d.device) == "string" and #d.device > 0, "device is a non-empty string")
  local m = d.memory
  assert(type(m) == "table", "memory is a table")
  for _, k in ipairs{"live", "peak", "device_free", "device_total"} do
    assert(math.type(m[k]) == "integer" and m[k] >= 0, "memory." .. k .. " is a byte count, got " .. tostring(m[k]))
  end
  assert(m.peak >= m.live, "peak >= live")
  if d.name == "cpu" then
    assert(m.device_free == 0 and m.device_total == 0, "the CPU has no device free/total figure")
  else
    assert(m.device_total > 0 and m.device_free <= m.device_total, "a CUDA device has free <= total > 0")
  end
end

local d = bitlab.device()
check_table(d)
assert(bitlab.device() ~= d, "each call returns a fresh table")
assert(bitlab.device().name == d.name, "the device stays the same")

-- no switching mid-run: any argument (nil included) is an error naming it and --device
for _, v in ipairs{"cuda", "cpu", "auto", 1, {}} do
  local ok, err = pcall(bitlab.device, v)
  err = tostring(err)
  assert(not ok and err:find("bad argument #1", 1, true) and err:find("--device", 1, true),
         "bitlab.device(" .. tostring(v) .. ") is refused: " .. err)
end
assert(not pcall(bitlab.device, nil), "bitlab.device(nil) is refused")

if model_path then
  local model = bitlab.load_model(model_path)
  local data = bitlab.dataset{model = model, text = {"the ternary student learns from tokens",
                                                    "one two three four five six seven"}, seed = 5}
  bitlab.train{
    model = model, data = data, steps = 2, batch = 1, seq = 16,
    adapter = {rank = 2, alpha = 4, seed = 7}, lr = 1e-3,
    loss = {ce = 1}, progress_every = 100, knobs = false,
  }
  d = bitlab.device()
  check_table(d)
end

local m = d.memory
print(string.format("DEVICE name=%s device=%s live=%d peak=%d device_free=%d device_total=%d",
                    d.name, (d.device:gsub("%s", "_")), m.live, m.peak, m.device_free, m.device_total))
print("all checks passed")
