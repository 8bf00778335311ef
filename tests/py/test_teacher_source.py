"""test_teacher_source.py - teacher-written data fed to the trainer on the fly
(bitlab.dataset{teacher = model, ...}, lua/bitlab/teacher_data.lua), on a
tiny random llama (make_tiny_model):

* tests/lua/teacher_source.lua: options refused by name, training starting
  after the first sampling call (an on_sample counter against the step),
  the examples equal to bitlab.teacher_data.build's, stats, passes, seek,
  filters that keep nothing; its JSONL file is parsed here again with
  Python's json module (every line an object with the chat messages);
* resume equality: the script's train mode for STEPS steps, for HALF steps,
  and resumed from HALF's checkpoint to STEPS: every step after HALF logs
  the uninterrupted run's losses and norms exactly (metrics_log.step_diffs),
  the teacher_data figures of the step records (served, kept) too, and the
  resumed run's JSONL -- rewritten as it regenerates -- equals the
  uninterrupted one's line for line;
* experiments/distill.lua with TRAIN = "teacher", 3 steps.
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
from bitlab_run import check, finish, run  # noqa: E402
from metrics_log import step_diffs, step_records  # noqa: E402

STEPS, HALF = 12, 4  # the script checkpoints every 4 steps


def main():
    tmp = tempfile.mkdtemp(prefix="bitlab_teacher_source_")
    model = tiny.write_tiny(tmp, arch="llama", seed=3, fmt="gguf").gguf_path
    p = run(["tests/lua/teacher_source.lua", "--headless", "--", model, tmp])
    check(p.returncode == 0 and "all checks passed" in p.stdout, "teacher_source.lua passes")
    if p.returncode or "FAIL" in p.stdout:
        print(p.stdout[-4000:], p.stderr[-3000:])

    with open(os.path.join(tmp, "lazy.jsonl")) as f:
        lines = f.read().split("\n")
    check(lines[-1] == "", "the JSONL ends with a newline (whole lines per flush)")
    try:
        recs = [json.loads(x) for x in lines[:-1]]
    except json.JSONDecodeError as e:
        recs = None
        check(False, f"the JSONL parses ({e})")
    ok = bool(recs) and all(
        [m["role"] for m in r["messages"]] == ["user", "assistant"]
        and isinstance(r["messages"][1]["content"], str) for r in recs)
    check(ok, f"every JSONL line parses as a user/assistant chat ({len(recs)} lines)")

    dirs, logs = {}, {}
    for tag, steps, resume in (("full", STEPS, None), ("half", HALF, None), ("resumed", STEPS, "half")):
        d = dirs[tag] = os.path.join(tmp, tag)
        os.makedirs(d)
        logs[tag] = os.path.join(tmp, f"{tag}.jsonl")
        opts = ["--headless", "--device", "cpu", "--log", logs[tag]]
        if resume:
            opts += ["--resume", os.path.join(dirs[resume], "ts.ckpt")]
        p = run(["tests/lua/teacher_source.lua", *opts, "--", model, d, "train", str(steps)])
        if not check(p.returncode == 0, f"train mode: the {tag} run"):
            print(p.stdout[-2000:], p.stderr[-2000:])
    full, res = step_records(logs["full"]), step_records(logs["resumed"])
    check(sorted(res) == list(range(HALF + 1, STEPS + 1)), f"the resumed run logs steps {HALF + 1}..{STEPS}")
    diffs = step_diffs(full, res)
    check(res and not diffs, f"steps {HALF + 1}..{STEPS} identical after resume (differing: {diffs[:6]})")
    td = [(s, full[s]["teacher_data"]["served"], res[s]["teacher_data"]["served"]) for s in res
          if "teacher_data" in res[s] and s in full]
    check(len(td) == len(res) and all(a == b == 3 * s for s, a, b in td),
          "teacher_data.served = 3 rows x step in both runs")
    check(all(full[s]["teacher_data"]["kept"] == res[s]["teacher_data"]["kept"] for s in res),
          "the resumed run regenerated as many kept examples as the uninterrupted one")
    with open(os.path.join(dirs["full"], "ts.jsonl")) as a, open(os.path.join(dirs["resumed"], "ts.jsonl")) as b:
        fa, fb = a.read(), b.read()
    check(fa and fa == fb, "the resumed run's JSONL equals the uninterrupted run's")

    # distill.lua's TRAIN = "teacher": 3 steps on teacher-written data
    d = os.path.join(tmp, "distill")
    os.makedirs(d)
    log = os.path.join(d, "log.jsonl")
    p = run(["experiments/distill.lua", "--headless", "--log", log, "--", model, "3", "teacher",
             "experiments/data/heldout.txt", os.path.join(d, "distill")])
    recs = step_records(log)
    check(p.returncode == 0 and sorted(recs) == [1, 2, 3]
          and all(r.get("teacher_data", {}).get("served") == 4 * s for s, r in recs.items()),
          "distill.lua -- MODEL 3 teacher: trains on the teacher source (teacher_data in each step record)")
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-2000:])
    jl = os.path.join(d, "distill.teacher.jsonl")
    check(os.path.exists(jl) and "teacher data:" in p.stdout and jl in p.stdout,
          "distill.lua writes OUT.teacher.jsonl and reports the teacher data")
    finish()


if __name__ == "__main__":
    main()
