-- bitlab.schedule - values as functions of the step (1-based): learning
-- rates, lambda, activation bits, loss weights. Every constructor returns a
-- plain function(step) -> value, so schedules compose (a schedule may wrap
-- another) and a script may pass its own function anywhere one is expected.
local M = {}

-- The value of x at step: numbers are constants, functions are called,
-- knobs (anything with a .value) are read live.
function M.value(x, step)
  local t = type(x)
  if t == "number" then return x end
  if t == "function" then return x(step) end
  if t == "userdata" or t == "table" then return x.value end
  error("schedule: cannot evaluate a " .. t, 2)
end

function M.constant(v)
  return function() return v end
end

-- From `from` at step `start` (default 1) to `to` at start + steps, then `to`.
function M.linear(from, to, steps, start)
  start = start or 1
  assert(steps and steps > 0, "linear: steps must be positive")
  return function(step)
    local f = (step - start) / steps
    if f <= 0 then return from end
    if f >= 1 then return to end
    return from + (to - from) * f
  end
end

-- Linear warm-up to `peak` over `warmup` steps, then cosine decay to `min`
-- at step `total` (held after).
function M.warmup_cosine(o)
  local peak, warmup, total, min = o.peak, o.warmup or 0, o.total, o.min or 0
  assert(peak and total, "warmup_cosine: peak and total are required")
  return function(step)
    if warmup > 0 and step <= warmup then return peak * step / warmup end
    local span = math.max(1, total - warmup)
    local f = math.min(1, math.max(0, (step - warmup) / span))
    return min + (peak - min) * 0.5 * (1 + math.cos(math.pi * f))
  end
end

-- Step decay: value · factor^floor((step − 1) / every).
function M.step(o)
  assert(o.value and o.every and o.every > 0, "step: value and every are required")
  local factor = o.factor or 0.1
  return function(step) return o.value * factor ^ ((step - 1) // o.every) end
end

-- Piecewise linear through points {{step, value}, ...} (sorted by step);
-- constant before the first and after the last. {hold = true} makes it
-- piecewise constant (each value holds until the next point).
function M.piecewise(points, opts)
  assert(#points >= 1, "piecewise: at least one point")
  for i = 2, #points do
    assert(points[i][1] > points[i - 1][1], "piecewise: steps must increase")
  end
  local hold = opts and opts.hold
  return function(step)
    if step <= points[1][1] then return points[1][2] end
    for i = 2, #points do
      local a, b = points[i - 1], points[i]
      if step < b[1] then
        if hold then return a[2] end
        return a[2] + (b[2] - a[2]) * (step - a[1]) / (b[1] - a[1])
      end
    end
    return points[#points][2]
  end
end

-- ReLoRA's jagged schedule: the base schedule times a short linear re-warm-up
-- after every adapter rotation (every `every` steps, the first rotation at
-- step every + 1), so the fresh adapter and reset optimizer start gently.
function M.relora(o)
  local base, every, warm = o.base, o.every, o.warmup or 10
  assert(base and every and every > 0, "relora: base and every are required")
  return function(step)
    local v = M.value(base, step)
    if step <= every then return v end
    local since = (step - 1) % every -- 0 at a rotation step
    return v * math.min(1, (since + 1) / warm)
  end
end

return M
