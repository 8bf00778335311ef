-- ckpt_layout.lua - a checkpoint trained on a Hugging Face folder, loaded on
-- the llama.cpp GGUF of the same weights (q/k rows in the other order), must
-- give the same student, and the next step (AdamW moments) must agree too.
-- bitlab tests/lua/ckpt_layout.lua -- HF_DIR GGUF CKPT
local hf = bitlab.load_model(arg[1])
local gg = bitlab.load_model(arg[2])
local text = {}
for i = 1, 4 do text[i] = string.rep("alpha beta gamma ", i) .. "delta " .. i end
local function make(m)
  local st = bitlab.student{model = m, lambda = 0.5, act_bits = 8, dense = true}
  st:add_adapter{rank = 4, seed = 1}
  return st, bitlab.trainer{student = st, batch = 2, seq = 32, lr = 2e-2, ce = 1}
end
local s1, t1 = make(hf)
local d = bitlab.dataset{model = hf, text = text, seed = 1}
for _ = 1, 4 do t1:step(d:batch(2, 32)) end
t1:save(arg[3])
local ids = hf:encode("alpha beta gamma delta alpha beta")
local _, base = hf:forward(ids)
local _, a = s1:forward(ids)
local s2, t2 = make(gg)
t2:load(arg[3])
local _, b = s2:forward(ids)
print(string.format("teacher %.9g hf %.9g gguf %.9g", base, a, b))
-- one more step on each: the converted moments must give the same update
local d1 = bitlab.dataset{model = hf, text = text, seed = 5}
local d2 = bitlab.dataset{model = gg, text = text, seed = 5}
t1:step(d1:batch(2, 32))
t2:step(d2:batch(2, 32))
local _, a2 = s1:forward(ids)
local _, b2 = s2:forward(ids)
print(string.format("after step hf %.9g gguf %.9g", a2, b2))
