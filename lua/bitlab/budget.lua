-- bitlab.budget - how long a training run is: a number of steps, of tokens
-- trained on, of wall-clock seconds, or any mix of them (the first one reached
-- ends the run). The loop asks it three things: whether the run is over, the
-- fraction of the run done (schedules written in fractions follow it, the
-- progress line and the dashboard show it) and the time left.
--
-- Seconds are the loop's own step time (generations and checkpoints included,
-- time paused in the dashboard not) and survive a resume like tokens do: the
-- checkpoint stores both (state()), so a resumed 30-minute run trains for
-- what is left of its 30 minutes.
local M = {}
M.__index = M

local function positive(o, name, integer)
  local v = o[name]
  if v == nil then return nil end
  if type(v) ~= "number" or not (v > 0 and v < math.huge) or (integer and v ~= math.floor(v)) then
    error(string.format("bitlab.train: option '%s' must be a positive %s, got %s", name,
      integer and "integer" or "number", tostring(v)), 4)
  end
  return integer and math.tointeger(v) or v
end

-- From bitlab.train's options steps / tokens / seconds (at least one) and the
-- state a resumed checkpoint stored (nil for a fresh run).
function M.new(o, resumed)
  local b = setmetatable({
    steps = positive(o, "steps", true), tokens = positive(o, "tokens", true),
    seconds = positive(o, "seconds", false),
    tokens_seen = resumed and resumed.tokens_seen or 0, elapsed = resumed and resumed.elapsed or 0,
    -- this session's rates, for the ETA
    run_steps = 0, run_tokens = 0, run_seconds = 0,
  }, M)
  if not (b.steps or b.tokens or b.seconds) then
    error("bitlab.train: give a budget: steps = N, tokens = N or seconds = S (or several: the first reached ends the run)", 3)
  end
  return b
end

-- Fraction of the run done once `step` steps are done: the largest of the
-- budgets' fractions, so it reaches 1 with the budget that ends the run.
function M:fraction(step)
  local f = 0
  if self.steps then f = math.max(f, step / self.steps) end
  if self.tokens then f = math.max(f, self.tokens_seen / self.tokens) end
  if self.seconds then f = math.max(f, self.elapsed / self.seconds) end
  return math.min(f, 1)
end

-- Whether the run is over before step `step` (it has done step - 1): the
-- name of the budget that ended it ("steps", "tokens", "seconds") or nil.
function M:over(step)
  if self.steps and step > self.steps then return "steps" end
  if self.tokens and self.tokens_seen >= self.tokens then return "tokens" end
  if self.seconds and self.elapsed >= self.seconds then return "seconds" end
  return nil
end

-- A step is done: its tokens and its wall seconds.
function M:record(tokens, seconds)
  tokens = math.tointeger(tokens) or tokens
  self.tokens_seen = self.tokens_seen + tokens
  self.elapsed = self.elapsed + seconds
  self.run_steps, self.run_tokens = self.run_steps + 1, self.run_tokens + tokens
  self.run_seconds = self.run_seconds + seconds
end

-- Seconds left after `step` steps, from this session's mean step time and
-- token rate (nil before the first step): the soonest of the budgets' ends.
function M:eta(step)
  if self.run_steps == 0 or self.run_seconds <= 0 then return nil end
  local left = math.huge
  if self.steps then left = math.min(left, (self.steps - step) * self.run_seconds / self.run_steps) end
  if self.tokens then
    left = math.min(left, (self.tokens - self.tokens_seen) * self.run_seconds / math.max(self.run_tokens, 1))
  end
  if self.seconds then left = math.min(left, self.seconds - self.elapsed) end
  return math.max(left, 0)
end

local function si(n)
  if n >= 1e9 then return string.format("%.3gG", n / 1e9) end
  if n >= 1e6 then return string.format("%.3gM", n / 1e6) end
  if n >= 1e4 then return string.format("%.3gk", n / 1e3) end
  return tostring(n)
end

-- "steps 100, tokens 1.2M, 30 min": for the dashboard's header and the first line.
function M:describe()
  local parts = {}
  if self.steps then parts[#parts + 1] = self.steps .. " steps" end
  if self.tokens then parts[#parts + 1] = si(self.tokens) .. " tokens" end
  if self.seconds then
    parts[#parts + 1] = self.seconds >= 120 and string.format("%.4g min", self.seconds / 60)
      or string.format("%.4g s", self.seconds)
  end
  return table.concat(parts, ", ")
end

-- What a checkpoint keeps so a resumed run continues the same budget.
function M:state()
  return {tokens_seen = self.tokens_seen, elapsed = self.elapsed}
end

return M
