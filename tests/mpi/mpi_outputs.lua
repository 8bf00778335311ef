-- mpi_outputs.lua - the outputs a script writes itself inside a data-parallel
-- run (test_mpi_outputs.py): bitlab.export and bitlab.eval{json=} called
-- directly, each rank naming its own file, so the test sees which rank
-- wrote. Every rank writes what the calls returned to TMPDIR/rank<R>.json.
-- [mpirun -np N] bitlab tests/mpi/mpi_outputs.lua -- MODEL TMPDIR
local m = bitlab.load_model(arg[1])
local dir, rank = arg[2], bitlab.rank()
local data = bitlab.dataset{model = m, text = {"alpha beta gamma delta", "one two three four five"}, seed = 1}
local run = bitlab.train{model = m, data = data, steps = 2, batch = 2, seq = 16,
                         adapter = {rank = 2, alpha = 4, seed = 3}, lambda = 1, act_bits = 8}
local ex = bitlab.export{student = run.student, out = string.format("%s/student%d.gguf", dir, rank),
                         manifest = run.manifest}
local ev = bitlab.eval{student = run.student, data = data, json = string.format("%s/eval%d.json", dir, rank)}
local n = 0
for _ in pairs(ex.tensors) do n = n + 1 end
local f = assert(io.open(string.format("%s/rank%d.json", dir, rank), "w"))
f:write(string.format('{"path": "%s", "format": "%s", "manifest": "%s", "n_tensors": %d, "kl": "%a"}\n',
  ex.path, ex.format, ex.manifest, n, ev.kl))
f:close()
