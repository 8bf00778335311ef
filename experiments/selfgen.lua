-- selfgen.lua - the teacher writes training data: it answers every prompt
-- of a list greedily, the answers are filtered, and the survivors are
-- written as JSONL chat lines that gradual.lua (or any dataset) can read.
--
-- Filters: answer length 32..2048 characters; no refusal or disclaimer
-- phrases; no duplicates (by a hash of the normalised text); a minimum
-- word diversity (distinct words / words).
--
-- bitlab experiments/selfgen.lua -- [MODEL] [PROMPTS.txt] [OUT.jsonl] [MAX_TOKENS]
local path = arg[1] or os.getenv("BITLAB_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf"
local prompts_file = arg[2] or "experiments/data/prompts.txt"
local out_file = arg[3] or "experiments/data/selfgen.jsonl"
local max_tokens = math.tointeger(tonumber(arg[4] or 256))

local MIN_CHARS, MAX_CHARS, MIN_DIVERSITY = 32, 2048, 0.3
local REFUSALS = {"i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai", "i'm not able",
                  "i am not able", "i don't have personal", "language model"}

-- FNV-1a over the lower-cased, whitespace-collapsed text
local function hash(s)
  s = s:lower():gsub("%s+", " ")
  local h = 2166136261
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  return h
end

local function diversity(s)
  local words, seen, distinct = 0, {}, 0
  for w in s:lower():gmatch("%a+") do
    words = words + 1
    if not seen[w] then seen[w], distinct = true, distinct + 1 end
  end
  return words > 0 and distinct / words or 0
end

-- nil when the answer passes, else the reason it is dropped
local function reject(answer, hashes)
  if #answer < MIN_CHARS then return "short" end
  if #answer > MAX_CHARS then return "long" end
  local low = answer:lower()
  for _, p in ipairs(REFUSALS) do
    if low:find(p, 1, true) then return "refusal" end
  end
  if hashes[hash(answer)] then return "duplicate" end
  if diversity(answer) < MIN_DIVERSITY then return "repetitive" end
end

-- a JSON string literal
local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
    return named[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local model = bitlab.load_model(path)
local out = assert(io.open(out_file .. ".tmp", "w"))
local hashes, kept, dropped, n = {}, 0, {}, 0
for prompt in io.lines(prompts_file) do
  if prompt:match("%S") then
    n = n + 1
    local answer = model:generate(prompt, {max_tokens = max_tokens})
    local why = reject(answer, hashes)
    if why then
      dropped[why] = (dropped[why] or 0) + 1
    else
      hashes[hash(answer)] = true
      kept = kept + 1
      out:write('{"messages":[{"role":"user","content":', jstr(prompt),
                '},{"role":"assistant","content":', jstr(answer), '}]}\n')
    end
    print(string.format("[%d] %s -> %s", n, prompt, why and ("dropped (" .. why .. ")") or "kept"))
    bitlab.event("selfgen", {prompt = prompt, kept = why == nil, reason = why})
  end
end
out:close()
assert(os.rename(out_file .. ".tmp", out_file))
local parts = {}
for k, v in pairs(dropped) do parts[#parts + 1] = k .. " " .. v end
print(string.format("kept %d of %d answers in %s (dropped: %s)", kept, n, out_file,
  #parts > 0 and table.concat(parts, ", ") or "none"))
