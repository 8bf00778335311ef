-- bitlab.teacher_data - training data the teacher writes on the fly: no
-- corpus needed. The teacher samples answers with bitlab.sample (batched,
-- one KV cache per row), bitlab.filters drops the bad ones, and the kept
-- (prompt, answer) pairs become chat examples of a bitlab.Dataset (samples
-- from the BOS token alone become text examples), which bitlab.train{data =}
-- trains on like any other. Optionally the kept pairs are written as JSONL
-- ({"messages": [user, assistant]} lines, {"text": ...} for BOS samples),
-- atomically: PATH.tmp while sampling, renamed to PATH at the end.
--
--   local ds, report = bitlab.teacher_data.build{model = m, prompts = {...}}
--
-- Options: model (required); prompts = a list (as bitlab.sample takes) or a
-- path to a text file of one prompt per line, or bos = true; n, max_tokens,
-- temperature, top_p, seed, batch, chat, system as bitlab.sample; chunk =
-- requests sampled per bitlab.sample call (64: progress and filtering
-- between calls); filters = options of bitlab.filters.new; dataset = a
-- Dataset to add to (else a new one of model, with seq/long/response_only/
-- template passed on); jsonl = a path; on_sample(i, prompt, answer, reason)
-- after each answer (reason nil: kept).
-- report = {total, kept, rejected = {reason = count}, tokens, seconds,
-- tokens_per_s}.
local filters = require "bitlab.filters"

local M = {}

local SAMPLE_OPTS = {"n", "max_tokens", "temperature", "top_p", "seed", "batch", "chat", "system"}
local DATASET_OPTS = {"seq", "long", "response_only", "template"}
local OWN_OPTS = {model = true, prompts = true, bos = true, chunk = true, filters = true,
                  dataset = true, jsonl = true, on_sample = true}
for _, k in ipairs(SAMPLE_OPTS) do OWN_OPTS[k] = true end
for _, k in ipairs(DATASET_OPTS) do OWN_OPTS[k] = true end

-- a JSON string literal
function M.json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
    return named[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- the JSONL line of a kept sample (no newline)
function M.jsonl_line(prompt, answer, system)
  local j = M.json_string
  if prompt == nil then return '{"text":' .. j(answer) .. '}' end
  return '{"messages":[' .. (system and '{"role":"system","content":' .. j(system) .. '},' or '') ..
    '{"role":"user","content":' .. j(prompt) .. '},{"role":"assistant","content":' .. j(answer) ..
    '}]}'
end

-- Non-blank lines of a prompts file, or an error naming it.
function M.read_prompts(path)
  local f, why = io.open(path, "r")
  if not f then error("bitlab.teacher_data: option 'prompts': cannot open " .. tostring(why), 3) end
  local list = {}
  for line in f:lines() do
    if line:match("%S") then list[#list + 1] = line end
  end
  f:close()
  if #list == 0 then error("bitlab.teacher_data: option 'prompts': " .. path .. " has no prompts", 3) end
  return list
end

local function check_options(o)
  if type(o) ~= "table" then error("bitlab.teacher_data.build: expected an options table", 3) end
  for k in pairs(o) do
    if not OWN_OPTS[k] then
      error(string.format("bitlab.teacher_data: unknown option '%s'", tostring(k)), 3)
    end
  end
  if o.model == nil then error("bitlab.teacher_data: option 'model' is required", 3) end
  if o.chunk ~= nil and (math.type(o.chunk) ~= "integer" or o.chunk < 1) then
    error("bitlab.teacher_data: option 'chunk' must be an integer >= 1, got " .. tostring(o.chunk), 3)
  end
  if o.n ~= nil and (math.type(o.n) ~= "integer" or o.n < 1) then
    error("bitlab.teacher_data: option 'n' must be an integer >= 1, got " .. tostring(o.n), 3)
  end
  if o.jsonl ~= nil and type(o.jsonl) ~= "string" then
    error("bitlab.teacher_data: option 'jsonl' must be a path, got " .. type(o.jsonl), 3)
  end
  if o.on_sample ~= nil and type(o.on_sample) ~= "function" then
    error("bitlab.teacher_data: option 'on_sample' must be a function, got " .. type(o.on_sample), 3)
  end
end

function M.build(o)
  check_options(o)
  local prompts = o.prompts
  if type(prompts) == "string" then prompts = M.read_prompts(prompts) end
  local f = filters.new(o.filters)
  local ds = o.dataset
  if ds == nil then
    local dopts = {model = o.model}
    for _, k in ipairs(DATASET_OPTS) do dopts[k] = o[k] end
    ds = bitlab.dataset(dopts)
  end
  -- the calls: `chunk` requests each (n samples of a prompt stay together)
  local n, chunk = o.n or 1, o.chunk or 64
  local calls = {}
  if o.bos then
    for first = 1, n, chunk do calls[#calls + 1] = {bos = true, n = math.min(chunk, n - first + 1)} end
  else
    if type(prompts) ~= "table" then
      error("bitlab.teacher_data: option 'prompts' must be a list, a path or absent with bos = true", 2)
    end
    for i, p in ipairs(prompts) do
      if type(p) ~= "string" then
        error(string.format("bitlab.teacher_data: option 'prompts': entry %d must be a string, got %s",
          i, type(p)), 2)
      end
    end
    local per_call = math.max(1, chunk // n)
    for first = 1, #prompts, per_call do
      calls[#calls + 1] = {prompts = table.move(prompts, first, math.min(#prompts, first + per_call - 1), 1, {}), n = n}
    end
  end
  local out = o.jsonl and assert(io.open(o.jsonl .. ".tmp", "w"))
  local raw = o.chat == false -- prompts fed as plain text: the examples are token lists
  local report = {total = 0, kept = 0, rejected = {}, tokens = 0, seconds = 0}
  for _, r in ipairs(filters.REASONS) do report.rejected[r] = 0 end
  for c, call in ipairs(calls) do
    local sopts = {model = o.model}
    for _, k in ipairs(SAMPLE_OPTS) do sopts[k] = o[k] end
    sopts.bos, sopts.prompts, sopts.n = call.bos, call.prompts, call.n
    -- bitlab.sample's request indices restart in every call: each call gets
    -- a seed of its own so that no two calls draw the same stream
    sopts.seed = (o.seed or 1) + (c - 1) * 1000003
    local got, st = bitlab.sample(sopts)
    report.tokens = report.tokens + st.tokens
    report.seconds = report.seconds + st.seconds
    for _, s in ipairs(got) do
      report.total = report.total + 1
      local why = f:check(s.text, s.stopped)
      local prompt = not o.bos and s.prompt or nil
      if why then
        report.rejected[why] = report.rejected[why] + 1
      else
        report.kept = report.kept + 1
        if not prompt then
          ds:add_text(s.text)
        elseif raw then
          local ids = o.model:prompt(prompt, {chat = false})
          local n_prompt = #ids
          table.move(s.ids, 1, #s.ids, n_prompt + 1, ids)
          ds:add_tokens(ids, n_prompt)
        else
          ds:add_chat{user = prompt, assistant = s.text, system = o.system}
        end
        if out then
          out:write(raw and M.jsonl_line(nil, prompt .. s.text) or M.jsonl_line(prompt, s.text, o.system), "\n")
        end
      end
      if o.on_sample then o.on_sample(report.total, prompt or "", s.text, why) end
    end
  end
  if out then
    out:close()
    assert(os.rename(o.jsonl .. ".tmp", o.jsonl))
  end
  report.tokens_per_s = report.seconds > 0 and report.tokens / report.seconds or 0
  return ds, report
end

return M
