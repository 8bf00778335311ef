-- bitlab.schedule - values as functions of the run's position: learning
-- rates, lambda, activation bits, loss weights. A schedule is a plain
-- function(step, fraction) -> value: step is 1-based, fraction the part of the
-- run's budget done before this step (0 at the start, towards 1 at the end;
-- bitlab.train passes both, see bitlab.budget). Step schedules read the step,
-- fraction schedules (ramp, warmup_cosine without total) the fraction, so one
-- written in fractions fits a run of any budget: steps, tokens or seconds.
-- Schedules compose (a schedule may wrap another) and a script may pass its
-- own function anywhere one is expected.
local M = {}

-- The value of x at step (and fraction): numbers are constants, functions are
-- called, knobs (anything with a .value) are read live.
function M.value(x, step, fraction)
  local t = type(x)
  if t == "number" then return x end
  if t == "function" then return x(step, fraction) end
  if t == "userdata" or t == "table" then return x.value end
  error("schedule: cannot evaluate a " .. t, 2)
end

-- The fraction a fraction schedule was called with, or an error naming it.
local function need_fraction(name, fraction)
  if type(fraction) ~= "number" then
    error(name .. ": a schedule in fractions of the run needs the run's fraction done "
      .. "(bitlab.train passes it as the second argument)", 3)
  end
  return fraction
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

-- From `from` at fraction `start` (default 0) of the run to `to` at fraction
-- `stop`, then `to`: ramp(0, 1, 0.3) is lambda 0 -> 1 over the first 30 %.
function M.ramp(from, to, stop, start)
  start = start or 0
  assert(type(stop) == "number" and stop > start and stop <= 1 and start >= 0,
    "ramp: need 0 <= start < stop <= 1 (fractions of the run)")
  return function(_, fraction)
    local f = (need_fraction("ramp", fraction) - start) / (stop - start)
    if f <= 0 then return from end
    if f >= 1 then return to end
    return from + (to - from) * f
  end
end

-- Linear warm-up to `peak` over `warmup` steps, then cosine decay to `min`
-- at step `total` (held after). Without total it is in fractions of the run:
-- warmup (default 0) is a fraction and the decay ends with the budget.
function M.warmup_cosine(o)
  local peak, warmup, total, min = o.peak, o.warmup or 0, o.total, o.min or 0
  assert(peak, "warmup_cosine: peak is required")
  -- at position x (a step or a fraction), decaying over span after the warm-up
  local function at(x, span)
    if warmup > 0 and x <= warmup then return peak * x / warmup end
    local f = math.min(1, math.max(0, (x - warmup) / span))
    return min + (peak - min) * 0.5 * (1 + math.cos(math.pi * f))
  end
  if total == nil then
    assert(warmup >= 0 and warmup < 1, "warmup_cosine: without total, warmup is a fraction of the run in [0, 1)")
    return function(_, fraction) return at(need_fraction("warmup_cosine", fraction), 1 - warmup) end
  end
  local span = math.max(1, total - warmup)
  return function(step) return at(step, span) end
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
  return function(step, fraction)
    local v = M.value(base, step, fraction)
    if step <= every then return v end
    local since = (step - 1) % every -- 0 at a rotation step
    return v * math.min(1, (since + 1) / warm)
  end
end

return M
