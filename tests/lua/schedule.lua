-- schedule.lua - the shapes of bitlab.schedule's functions.
local check = require "check"
local S = bitlab.schedule

check.eq(S.constant(3)(100), 3, "constant")
local lin = S.linear(0, 1, 10)
check.eq(lin(1), 0, "linear at start")
check.near(lin(6), 0.5, 1e-12, "linear midway")
check.eq(lin(11), 1, "linear at end")
check.eq(lin(50), 1, "linear holds after")

local wc = S.warmup_cosine{peak = 1, warmup = 10, total = 110, min = 0.1}
check.near(wc(5), 0.5, 1e-12, "warm-up is linear")
check.near(wc(10), 1, 1e-12, "peak at the end of warm-up")
check.near(wc(60), 0.55, 1e-12, "cosine midpoint is (peak+min)/2")
check.near(wc(110), 0.1, 1e-12, "min at total")
check.near(wc(500), 0.1, 1e-12, "min holds after total")
local mono = true
for s = 11, 109 do if wc(s + 1) > wc(s) then mono = false end end
check.ok(mono, "cosine decays monotonically")

local st = S.step{value = 1, every = 10, factor = 0.5}
check.eq(st(10), 1, "step decay: first plateau")
check.eq(st(11), 0.5, "step decay: second plateau")
check.eq(st(25), 0.25, "step decay: third plateau")

local pw = S.piecewise{{1, 0}, {11, 1}, {21, 1}, {31, 0}}
check.eq(pw(0), 0, "piecewise before the first point")
check.near(pw(6), 0.5, 1e-12, "piecewise interpolates")
check.eq(pw(15), 1, "piecewise flat segment")
check.near(pw(26), 0.5, 1e-12, "piecewise descending")
check.eq(pw(40), 0, "piecewise after the last point")
local hold = S.piecewise({{1, 8}, {10, 4}}, {hold = true})
check.eq(hold(9), 8, "piecewise hold keeps the value")
check.eq(hold(10), 4, "piecewise hold switches at the point")

local rl = S.relora{base = S.constant(1), every = 10, warmup = 5}
check.eq(rl(10), 1, "relora: no dip before the first rotation")
check.near(rl(11), 0.2, 1e-12, "relora: re-warm-up starts at the rotation step")
check.near(rl(13), 0.6, 1e-12, "relora: re-warm-up rises linearly")
check.eq(rl(15), 1, "relora: back to base after warmup")
check.near(rl(21), 0.2, 1e-12, "relora: jagged at every rotation")

local k = bitlab.knob{name = "sched_knob", value = 0.25, min = 0, max = 1}
check.eq(S.value(k, 1), 0.25, "schedule.value reads a knob")
check.eq(S.value(function(s) return s * 2 end, 4), 8, "schedule.value calls a function")

local mix = bitlab.loss.at({ce = 1, kl = S.linear(0, 1, 10)}, 6)
check.eq(mix.ce, 1, "loss.at number")
check.near(mix.kl, 0.5, 1e-12, "loss.at schedule")
check.eq(mix.topk, 0, "loss.at absent term is 0")
check.eq(mix.tau, 1, "loss.at default tau")

-- schedules in fractions of the run: (step, fraction) -> value
local ramp = S.ramp(0, 1, 0.3)
check.eq(ramp(1, 0), 0, "ramp at the start")
check.near(ramp(7, 0.15), 0.5, 1e-12, "ramp midway reads the fraction, not the step")
check.eq(ramp(2, 0.3), 1, "ramp reaches its end value at its stop fraction")
check.eq(ramp(9, 0.9), 1, "ramp holds after")
local late = S.ramp(2, 4, 1, 0.5)
check.eq(late(1, 0.25), 2, "ramp with a start fraction: before it")
check.near(late(1, 0.75), 3, 1e-12, "ramp with a start fraction: midway")
check.raises(function() ramp(5) end, "needs the run's fraction done", "a fraction schedule called without the fraction names what it needs")
check.raises(function() S.ramp(0, 1, 1.5) end, "0 <= start < stop <= 1", "ramp past the end of the run is refused")
local wf = S.warmup_cosine{peak = 1, warmup = 0.1, min = 0.1}
check.near(wf(1, 0.05), 0.5, 1e-12, "fraction warm-up is linear")
check.near(wf(1, 0.55), 0.55, 1e-12, "fraction cosine midpoint is (peak+min)/2")
check.near(wf(1, 1), 0.1, 1e-12, "fraction cosine ends at min with the budget")
check.raises(function() S.warmup_cosine{peak = 1, warmup = 2} end, "warmup is a fraction",
  "without total, a warm-up of 2 (steps?) is refused")
check.near(S.relora{base = S.ramp(0, 1, 1), every = 10, warmup = 1}(3, 0.5), 0.5, 1e-12,
  "relora passes the fraction to its base")
check.near(bitlab.loss.at({kl = S.ramp(0, 2, 1)}, 3, 0.25).kl, 0.5, 1e-12, "loss.at passes the fraction")
check.done()
