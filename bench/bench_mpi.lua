-- bench_mpi.lua - the step throughput of bitlab.train on however many
-- processes run it (bench/bench_mpi.sh runs it on 1 and on 2): random
-- full-length rows, no checkpoint, the median of the step records' global
-- tokens/s after WARMUP steps printed by rank 0 as "TOKENS_PER_S x".
-- [mpirun -np N] bitlab bench/bench_mpi.lua --headless -- MODEL STEPS BATCH SEQ
local m = bitlab.load_model(arg[1])
local steps, B, T = math.tointeger(tonumber(arg[2])), math.tointeger(tonumber(arg[3])),
                    math.tointeger(tonumber(arg[4]))
local WARMUP = 2
bitlab.seed(7)
local words = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}
local texts = {}
for i = 1, 64 do
  local w = {}
  for j = 1, 4 * T do w[j] = words[bitlab.random(#words)] end
  texts[i] = table.concat(w, " ")
end
local data = bitlab.dataset{model = m, text = texts, seed = 1, seq = T, long = "split"}
local rates = {}
bitlab.train{
  model = m, data = data, steps = steps, batch = B, seq = T, progress_every = steps,
  instability = false,
  on_step = function(step, r) if step > WARMUP then rates[#rates + 1] = r.tokens_per_s end end,
}
table.sort(rates)
print(string.format("TOKENS_PER_S %.1f", rates[(#rates + 1) // 2] or 0))
