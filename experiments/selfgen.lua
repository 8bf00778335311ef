-- selfgen.lua - the teacher writes training data: it answers every prompt
-- of a list greedily (batched: bitlab.sample), the answers are filtered,
-- and the survivors are written as JSONL chat lines that gradual.lua (or any
-- dataset) can read. bitlab.teacher_data does the work; a script can skip the
-- file and train on the dataset it returns.
--
-- Filters (bitlab.filters): answer length 32..2048 characters; no refusal or
-- disclaimer phrases; no duplicates (by a hash of the normalised text); a
-- minimum word diversity (distinct words / words).
--
-- bitlab experiments/selfgen.lua -- [MODEL] [PROMPTS.txt] [OUT.jsonl] [MAX_TOKENS]
local path = arg[1] or os.getenv("BITLAB_MODEL") or "models/SmolLM2-135M-Instruct.Q4_1.gguf"
local prompts_file = arg[2] or "experiments/data/prompts.txt"
local out_file = arg[3] or "experiments/data/selfgen.jsonl"
local max_tokens = math.tointeger(tonumber(arg[4] or 256))

local model = bitlab.load_model(path)
-- greedy, 16 prompts decoded together (bitlab.sample); filtered by
-- bitlab.filters' defaults; written atomically by bitlab.teacher_data
local _, report = bitlab.teacher_data.build{
  model = model, prompts = prompts_file, max_tokens = max_tokens, temperature = 0, batch = 16,
  jsonl = out_file,
  on_sample = function(i, prompt, _, why)
    print(string.format("[%d] %s -> %s", i, prompt, why and ("dropped (" .. why .. ")") or "kept"))
    bitlab.event("selfgen", {prompt = prompt, kept = why == nil, reason = why})
  end,
}
local parts = {}
for _, why in ipairs(bitlab.filters.REASONS) do
  local c = report.rejected[why]
  if c > 0 then parts[#parts + 1] = why .. " " .. c end
end
print(string.format("kept %d of %d answers in %s (dropped: %s)", report.kept, report.total, out_file,
  #parts > 0 and table.concat(parts, ", ") or "none"))
