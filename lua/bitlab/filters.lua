-- bitlab.filters - quality filters for teacher-written answers: the one home
-- of the rules experiments/selfgen.lua and bitlab.teacher_data apply.
--
-- An answer is dropped, for the first reason that holds, as
--   "short"      fewer than min_chars characters (bytes)
--   "long"       more than max_chars
--   "truncated"  cut at max_tokens rather than ended by a stop token (only
--                with require_stop = true: selfgen keeps such answers)
--   "refusal"    it contains a refusal or disclaimer phrase (case-insensitive)
--   "duplicate"  an answer kept before has the same normalised text
--   "repetitive" distinct words / words below min_diversity
--
--   local f = bitlab.filters.new{min_chars = 16}
--   local why = f:check(answer [, stopped])   -- nil: kept (and remembered)
local M = {}

M.REASONS = {"short", "long", "truncated", "refusal", "duplicate", "repetitive"}

M.defaults = {
  min_chars = 32, max_chars = 2048, min_diversity = 0.3, require_stop = false,
  refusals = {"i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai", "i'm not able",
              "i am not able", "i don't have personal", "language model"},
}

-- FNV-1a over the lower-cased, whitespace-collapsed text: what "the same
-- answer" means for duplicates
function M.hash(s)
  s = s:lower():gsub("%s+", " ")
  local h = 2166136261
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  return h
end

-- distinct words / words (letters only, lower-cased); 0 for no words
function M.diversity(s)
  local words, seen, distinct = 0, {}, 0
  for w in s:lower():gmatch("%a+") do
    words = words + 1
    if not seen[w] then seen[w], distinct = true, distinct + 1 end
  end
  return words > 0 and distinct / words or 0
end

local Filter = {}
Filter.__index = Filter

local function check_options(o)
  for k, v in pairs(o) do
    local d = M.defaults[k]
    if d == nil then error(string.format("bitlab.filters: unknown option '%s'", tostring(k)), 3) end
    if type(v) ~= type(d) then
      error(string.format("bitlab.filters: option '%s' must be a %s, got %s", k, type(d), type(v)), 3)
    end
  end
  for _, k in ipairs{"min_chars", "max_chars", "min_diversity"} do
    if o[k] and o[k] < 0 then
      error(string.format("bitlab.filters: option '%s' must be >= 0, got %s", k, o[k]), 3)
    end
  end
end

-- A filter with its own memory of kept answers (for duplicates); opts
-- override M.defaults field by field.
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bitlab.filters.new: options must be a table", 2) end
  check_options(opts)
  local f = setmetatable({seen = {}}, Filter)
  for k, v in pairs(M.defaults) do f[k] = v end
  for k, v in pairs(opts) do f[k] = v end
  f.lowered = {}
  for i, p in ipairs(f.refusals) do f.lowered[i] = p:lower() end
  return f
end

-- The reason answer is dropped, or nil (then it counts as seen).
-- stopped: whether a stop token ended it (for require_stop; default true).
function Filter:check(answer, stopped)
  local why = self:reason(answer, stopped)
  if not why then self.seen[M.hash(answer)] = true end
  return why
end

-- The same without remembering the answer.
function Filter:reason(answer, stopped)
  if #answer < self.min_chars then return "short" end
  if #answer > self.max_chars then return "long" end
  if self.require_stop and stopped == false then return "truncated" end
  local low = answer:lower()
  for _, p in ipairs(self.lowered) do
    if low:find(p, 1, true) then return "refusal" end
  end
  if self.seen[M.hash(answer)] then return "duplicate" end
  if M.diversity(answer) < self.min_diversity then return "repetitive" end
end

return M
