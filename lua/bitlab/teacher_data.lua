-- bitlab.teacher_data - training data the teacher writes: no corpus needed.
-- The teacher samples answers with bitlab.sample (batched, one KV cache per
-- row), bitlab.filters drops the bad ones, and the kept (prompt, answer)
-- pairs become chat examples of a bitlab.Dataset (samples from the BOS token
-- alone become text examples). Two ways to use it, one chunk sampler:
--
--   local ds, report = bitlab.teacher_data.build{model = m, prompts = {...}}
--     samples every request first and returns the filled Dataset, which
--     bitlab.train{data =} trains on like any other;
--   local src = bitlab.dataset{teacher = m, prompts = {...}}   (= M.source)
--     a data source that samples a chunk only when the trainer asks for
--     examples it has not produced yet: training starts after the first
--     chunk, not after all of them (see "the on-the-fly source" below).
--
-- build's options: model (required); prompts = a list (as bitlab.sample
-- takes) or a path to a text file of one prompt per line, or bos = true; n,
-- max_tokens, temperature, top_p, seed, batch, chat, system as bitlab.sample;
-- chunk = requests sampled per bitlab.sample call (64: progress and
-- filtering between calls); filters = options of bitlab.filters.new;
-- dataset = a Dataset to add to (else a new one of model, with seq/long/
-- response_only/template passed on); jsonl = a path: the kept pairs as JSONL
-- ({"messages": [user, assistant]} lines, {"text": ...} for BOS or raw
-- samples), atomically: PATH.tmp while sampling, renamed to PATH at the end;
-- on_sample(i, prompt, answer, reason) after each answer (reason nil: kept).
-- report = {total, kept, rejected = {reason = count}, tokens, seconds,
-- tokens_per_s, calls}.
--
-- The calls: a pass over the prompts is cut into calls of max(1, chunk // n)
-- prompts (each with its n samples; with bos = true, calls of chunk samples
-- until n). bitlab.sample's request indices restart in every call, so call c
-- (1-based, counted over all passes) samples with seed + (c - 1) * 1000003:
-- no two calls draw the same stream, and every draw is a function of (seed,
-- c, the call's requests) only -- which is what lets a resumed run
-- regenerate its examples.
local filters = require "bitlab.filters"

local M = {}

local SAMPLE_OPTS = {"n", "max_tokens", "temperature", "top_p", "seed", "batch", "chat", "system"}
local DATASET_OPTS = {"seq", "long", "response_only", "template"}
local BUILD_OPTS = {model = true, prompts = true, bos = true, chunk = true, filters = true,
                    dataset = true, jsonl = true, on_sample = true}
local SOURCE_OPTS = {teacher = true, model = true, prompts = true, bos = true, chunk = true,
                     filters = true, jsonl = true, on_sample = true, passes = true}
for _, k in ipairs(SAMPLE_OPTS) do BUILD_OPTS[k], SOURCE_OPTS[k] = true, true end
for _, k in ipairs(DATASET_OPTS) do BUILD_OPTS[k], SOURCE_OPTS[k] = true, true end

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

-- Non-blank lines of a prompts file, or an error naming it (who: the
-- function the caller called, for the message).
function M.read_prompts(path, who, level)
  who, level = who or "bitlab.teacher_data", level or 1
  local f, why = io.open(path, "r")
  if not f then error(who .. ": option 'prompts': cannot open " .. tostring(why), level + 1) end
  local list = {}
  for line in f:lines() do
    if line:match("%S") then list[#list + 1] = line end
  end
  f:close()
  if #list == 0 then error(who .. ": option 'prompts': " .. path .. " has no prompts", level + 1) end
  return list
end

-- Whether this process writes files: under mpirun every rank samples the
-- same examples (the draws are deterministic), rank 0 alone writes them.
local function writer()
  return not bitlab.rank or bitlab.rank() == 0
end

-- ----------------------------------------------------------------------------
-- options

local function is_model(x)
  local mt = getmetatable(x)
  return type(mt) == "table" and mt.__name == "bitlab.Model"
end

-- o's option names against `known`, then the values every form shares;
-- errors at `level` (the caller of build / bitlab.dataset, seen from here).
local function check_options(o, known, who, level)
  for k in pairs(o) do
    if not known[k] then error(string.format("%s: unknown option '%s'", who, tostring(k)), level) end
  end
  local function count(v) return v == nil or (math.type(v) == "integer" and v >= 1) end
  local rules = { -- name, whether the value is right, what it must be
    {"chunk", count(o.chunk), "an integer >= 1"}, {"n", count(o.n), "an integer >= 1"},
    {"max_tokens", count(o.max_tokens), "an integer >= 1"}, {"batch", count(o.batch), "an integer >= 1"},
    {"passes", count(o.passes), "an integer >= 1"},
    {"seed", o.seed == nil or math.type(o.seed) == "integer", "an integer"},
    {"temperature", o.temperature == nil or (type(o.temperature) == "number" and o.temperature >= 0),
     "a number >= 0"},
    {"top_p", o.top_p == nil or (type(o.top_p) == "number" and o.top_p > 0 and o.top_p <= 1), "a number in (0, 1]"},
    {"chat", o.chat == nil or type(o.chat) == "boolean", "a boolean"},
    {"bos", o.bos == nil or type(o.bos) == "boolean", "a boolean"},
    {"system", o.system == nil or type(o.system) == "string", "a string"},
    {"filters", o.filters == nil or type(o.filters) == "table", "a table of bitlab.filters options"},
    {"jsonl", o.jsonl == nil or type(o.jsonl) == "string", "a path"},
    {"on_sample", o.on_sample == nil or type(o.on_sample) == "function", "a function"},
  }
  for _, r in ipairs(rules) do
    if not r[2] then
      error(string.format("%s: option '%s' must be %s, got %s", who, r[1], r[3], tostring(o[r[1]])), level)
    end
  end
end

-- The prompt list of o (nil with bos = true), read from a file when a path;
-- errors at `level`, as check_options'.
local function prompt_list(o, who, level)
  local prompts = o.prompts
  if o.bos then
    if prompts ~= nil then error(who .. ": give option 'prompts' or bos = true, not both", level) end
    return nil
  end
  if type(prompts) == "string" then prompts = M.read_prompts(prompts, who, level) end
  if type(prompts) ~= "table" then
    error(string.format("%s: option 'prompts' must be a list, a path or absent with bos = true, got %s",
      who, type(prompts)), level)
  end
  if #prompts == 0 then error(who .. ": option 'prompts' is an empty list", level) end
  for i, p in ipairs(prompts) do
    if type(p) ~= "string" then
      error(string.format("%s: option 'prompts': entry %d must be a string, got %s", who, i, type(p)), level)
    end
  end
  return prompts
end

-- ----------------------------------------------------------------------------
-- the chunk sampler: the one home of sampling, filtering, adding and writing

local Sampler = {}
Sampler.__index = Sampler

-- A sampler of o's requests into ds (a Dataset); out: an open file for the
-- JSONL lines, or nil; passes: the passes over the prompts (nil: no end).
local function new_sampler(o, model, prompts, ds, out, passes)
  local n, chunk = o.n or 1, o.chunk or 64
  local s = setmetatable({o = o, model = model, prompts = prompts, ds = ds, out = out, passes = passes,
                          n = n, chunk = chunk, filter = filters.new(o.filters), calls = 0,
                          raw = o.chat == false, -- prompts fed as plain text: the examples are token lists
                          report = {total = 0, kept = 0, rejected = {}, tokens = 0, seconds = 0,
                                    jsonl_lines = 0, jsonl_seconds = 0}}, Sampler)
  for _, r in ipairs(filters.REASONS) do s.report.rejected[r] = 0 end
  if o.bos then
    s.per_pass = (n + chunk - 1) // chunk
  else
    s.per_call = math.max(1, chunk // n)
    s.per_pass = (#prompts + s.per_call - 1) // s.per_call
  end
  return s
end

-- The bitlab.sample options of call c (1-based over all passes).
function Sampler:call_options(c)
  local o = self.o
  local sopts = {model = self.model}
  for _, k in ipairs(SAMPLE_OPTS) do sopts[k] = o[k] end
  local k = (c - 1) % self.per_pass -- the call's place in its pass
  if o.bos then
    local first = k * self.chunk + 1
    sopts.bos, sopts.n = true, math.min(self.chunk, self.n - first + 1)
  else
    local first = k * self.per_call + 1
    sopts.prompts = table.move(self.prompts, first, math.min(#self.prompts, first + self.per_call - 1), 1, {})
    sopts.n = self.n
  end
  sopts.seed = (o.seed or 1) + (c - 1) * 1000003
  return sopts
end

-- The pass the next call belongs to (0-based).
function Sampler:pass()
  return self.calls // self.per_pass
end

-- Samples the next call: its answers filtered, the kept ones added to the
-- dataset and written to the JSONL file (flushed). false when the passes
-- are done.
function Sampler:next()
  if self.passes and self:pass() >= self.passes then return false end
  self.calls = self.calls + 1
  local o, rep = self.o, self.report
  local got, st = bitlab.sample(self:call_options(self.calls))
  rep.tokens = rep.tokens + st.tokens
  rep.seconds = rep.seconds + st.seconds
  local lines = self.out and {}
  for _, s in ipairs(got) do
    rep.total = rep.total + 1
    local why = self.filter:check(s.text, s.stopped)
    local prompt = not o.bos and s.prompt or nil
    if why then
      rep.rejected[why] = rep.rejected[why] + 1
    else
      rep.kept = rep.kept + 1
      if not prompt then
        self.ds:add_text(s.text)
      elseif self.raw then
        local ids = self.model:prompt(prompt, {chat = false})
        local n_prompt = #ids
        table.move(s.ids, 1, #s.ids, n_prompt + 1, ids)
        self.ds:add_tokens(ids, n_prompt)
      else
        self.ds:add_chat{user = prompt, assistant = s.text, system = o.system}
      end
      if lines then
        lines[#lines + 1] = not prompt and M.jsonl_line(nil, s.text)
          or self.raw and M.jsonl_line(nil, prompt .. s.text) or M.jsonl_line(prompt, s.text, o.system)
      end
    end
    if o.on_sample then o.on_sample(rep.total, prompt or "", s.text, why) end
  end
  if lines and #lines > 0 then
    -- inline (Lua has no threads): one write and a flush per call, timed
    local t0 = bitlab.clock()
    lines[#lines + 1] = ""
    assert(self.out:write(table.concat(lines, "\n")))
    assert(self.out:flush())
    rep.jsonl_lines = rep.jsonl_lines + #lines - 1
    rep.jsonl_seconds = rep.jsonl_seconds + bitlab.clock() - t0
  end
  return true
end

-- ----------------------------------------------------------------------------
-- build: everything first

function M.build(o)
  local who = "bitlab.teacher_data"
  if type(o) ~= "table" then error("bitlab.teacher_data.build: expected an options table", 2) end
  check_options(o, BUILD_OPTS, who, 3)
  if o.model == nil then error("bitlab.teacher_data: option 'model' is required", 2) end
  local prompts = prompt_list(o, who, 3)
  local ds = o.dataset
  if ds == nil then
    local dopts = {model = o.model}
    for _, k in ipairs(DATASET_OPTS) do dopts[k] = o[k] end
    ds = bitlab.dataset(dopts)
  end
  local out = o.jsonl and writer() and assert(io.open(o.jsonl .. ".tmp", "w"))
  local s = new_sampler(o, o.model, prompts, ds, out, 1)
  while s:next() do end
  if out then
    out:close()
    assert(os.rename(o.jsonl .. ".tmp", o.jsonl))
  end
  local r = s.report
  return ds, {total = r.total, kept = r.kept, rejected = r.rejected, tokens = r.tokens, seconds = r.seconds,
              tokens_per_s = r.seconds > 0 and r.tokens / r.seconds or 0, calls = s.calls}
end

-- ----------------------------------------------------------------------------
-- the on-the-fly source
--
-- bitlab.dataset{teacher = MODEL, prompts = LIST | PATH | bos = true, ...}:
-- options as build's (model = the teacher's own model or absent: the
-- student is of the teacher's model) less dataset, plus passes. The source
-- keeps an internal Dataset (no shuffle: examples in the order they were
-- produced) and serves
--   src:batch(B [, T])   the next B examples, sampling calls until it holds
--                        them (a Batch, as Dataset:batch)
--   src:max_len()        seq when given, else the longest example of what is
--                        held, after the first call when nothing is (a
--                        batch length fixed then: later, longer examples lose
--                        their tails in batches of it, warned once; give seq
--                        to choose)
--   src:position(), src:seek(pos)  {served, key}: examples served so far and
--                        a digest of the options that decide the examples
--   src:stats()          {examples (held), served, total (answers sampled),
--                        kept, rejected = {reason = count}, rejected_total,
--                        teacher_tokens, teacher_seconds, tokens_per_s,
--                        calls, epoch (passes completed), jsonl_lines,
--                        jsonl_seconds}
--   src:dataset()        the internal Dataset (the examples held so far)
--   src:size()           examples held
-- When the prompts run out the source starts the next pass over them: the
-- call index keeps counting, so every pass draws other samples (at
-- temperature 0 they are the same answers, which the duplicate filter drops);
-- passes = N stops after N passes, after which batches go round the kept
-- examples again in order, as a Dataset's next epoch does. A pass that adds
-- no example to the dataset while the trainer waits for one is an error (the
-- filters reject everything), not an endless loop.
-- Resume: seek only records the position; the next batch regenerates the
-- examples from the first call (same seeds, same filter history, hence the
-- same examples, on the same backend), so a resumed run trains on what an
-- uninterrupted one does. The key refuses a checkpoint of other options.
-- jsonl = PATH: kept pairs appended to PATH as they are produced, one write
-- and flush per call. A stream has no end at which to rename a temporary
-- file, so PATH is written directly, truncated when the source is made:
-- after a crash it holds every call flushed so far (a last line without its
-- newline is a torn write); a resumed run rewrites it from the start as it
-- regenerates, so it holds the same lines as an uninterrupted run's. Under
-- mpirun every rank samples the same examples and rank 0 alone writes them.

local Source = {__name = "bitlab.TeacherSource"}
Source.__index = Source

local function fnv(h, s)
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  return h
end

-- A digest of what decides the examples, checked by seek.
local function options_key(o, prompts)
  local parts = {}
  for _, k in ipairs{"n", "max_tokens", "temperature", "top_p", "seed", "batch", "chat", "system", "chunk",
                     "bos", "seq", "long", "response_only", "template", "passes"} do
    parts[#parts + 1] = k .. "=" .. tostring(o[k])
  end
  local f = o.filters or {}
  local fk = {}
  for k in pairs(f) do fk[#fk + 1] = k end
  table.sort(fk)
  for _, k in ipairs(fk) do
    local v = f[k]
    parts[#parts + 1] = "filters." .. k .. "=" .. (type(v) == "table" and table.concat(v, "\1") or tostring(v))
  end
  local h = fnv(2166136261, table.concat(parts, "\0"))
  for _, p in ipairs(prompts or {}) do h = fnv(fnv(h, p), "\0") end
  return string.format("%08x-%d", h, prompts and #prompts or 0)
end

function M.source(o)
  local who = "bitlab.dataset{teacher}"
  if type(o) ~= "table" then error(who .. ": expected an options table", 3) end
  check_options(o, SOURCE_OPTS, who, 4) -- 4: through bitlab.dataset (C) to its caller
  if not is_model(o.teacher) then
    error(string.format("%s: option 'teacher' must be a bitlab.Model, got %s", who, type(o.teacher)), 3)
  end
  if o.model ~= nil and o.model ~= o.teacher then
    error(who .. ": option 'model' must be the teacher's model (student and teacher share it) or absent", 3)
  end
  local prompts = prompt_list(o, who, 4)
  local dopts = {model = o.teacher}
  for _, k in ipairs(DATASET_OPTS) do dopts[k] = o[k] end
  local ds = bitlab.dataset(dopts)
  local out
  if o.jsonl and writer() then
    local f, why = io.open(o.jsonl, "w")
    if not f then error(who .. ": option 'jsonl': cannot create " .. tostring(why), 3) end
    out = f
  end
  return setmetatable({sampler = new_sampler(o, o.teacher, prompts, ds, out, o.passes), ds = ds, served = 0,
                       seq = o.seq, key = options_key(o, prompts), model = o.teacher}, Source)
end

-- Samples calls until the dataset holds `need` examples or the passes are
-- done; a whole pass adding nothing is an error.
function Source:fill(need)
  local s, ds = self.sampler, self.ds
  local idle = 0 -- calls since the dataset last grew
  while ds:size() < need do
    local before = ds:size()
    if not s:next() then return end
    if ds:size() > before then
      idle = 0
    else
      idle = idle + 1
      if idle >= s.per_pass then
        local r, parts = s.report, {}
        for _, why in ipairs(filters.REASONS) do
          if r.rejected[why] > 0 then parts[#parts + 1] = why .. " " .. r.rejected[why] end
        end
        error(string.format("bitlab.dataset{teacher}: a whole pass over the prompts (%d calls) added no "
          .. "example (%d of %d answers kept so far; rejected: %s): relax option 'filters' or raise "
          .. "'temperature'", idle, r.kept, r.total, #parts > 0 and table.concat(parts, ", ") or "none"), 0)
      end
    end
  end
end

function Source:batch(B, T)
  if math.type(B) ~= "integer" or B < 1 then
    error("bitlab.TeacherSource:batch: B must be an integer >= 1, got " .. tostring(B), 2)
  end
  self:fill(self.served + B)
  local size = self.ds:size()
  if size == 0 then error("bitlab.dataset{teacher}: the teacher's answers gave no example", 2) end
  -- in production order; once the passes are done, round the kept examples again
  self.ds:seek(self.served // size, self.served % size)
  local b = self.ds:batch(B, T)
  self.served = self.served + B
  return b
end

function Source:max_len()
  if self.seq then return self.seq end
  if self.ds:size() == 0 then self:fill(1) end
  return self.ds:max_len()
end

function Source:size() return self.ds:size() end
function Source:dataset() return self.ds end

function Source:position()
  return {served = self.served, key = self.key}
end

function Source:seek(pos)
  local served = type(pos) == "table" and math.tointeger(pos.served)
  if not served or served < 0 then
    error("bitlab.TeacherSource:seek: the position is not a teacher source's ({served =, key =} expected)", 2)
  end
  if pos.key ~= self.key then
    error(string.format("bitlab.TeacherSource:seek: the position was written with other teacher-data options "
      .. "(key %s, this source's %s): prompts, seed and sampling options must be the run's own to "
      .. "regenerate its examples", tostring(pos.key), self.key), 2)
  end
  self.served = served
end

function Source:stats()
  local s = self.sampler
  local r, rejected = s.report, 0
  local by = {}
  for why, c in pairs(r.rejected) do
    by[why] = c
    rejected = rejected + c
  end
  return {examples = self.ds:size(), served = self.served, total = r.total, kept = r.kept, rejected = by,
          rejected_total = rejected, teacher_tokens = r.tokens, teacher_seconds = r.seconds,
          tokens_per_s = r.seconds > 0 and r.tokens / r.seconds or 0, calls = s.calls,
          epoch = s.calls // s.per_pass, jsonl_lines = r.jsonl_lines, jsonl_seconds = r.jsonl_seconds}
end

function Source:__tostring()
  return string.format("bitlab.TeacherSource (%d examples, %d served)", self.ds:size(), self.served)
end

return M
