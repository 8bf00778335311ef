-- check.lua - the assertions the Lua API tests share: each failure names
-- what was checked, and done() raises if any failed, so the run exits 1.
local M = {failures = 0}

function M.ok(cond, what)
  print((cond and "ok   " or "FAIL ") .. what)
  if not cond then M.failures = M.failures + 1 end
  return cond
end

function M.eq(a, b, what)
  return M.ok(a == b, string.format("%s (%s == %s)", what, tostring(a), tostring(b)))
end

function M.near(a, b, tol, what)
  return M.ok(math.abs(a - b) <= tol, string.format("%s (%.6g ~ %.6g)", what, a, b))
end

-- fn must raise an error whose message contains `pattern` (plain text).
function M.raises(fn, pattern, what)
  local ok, msg = pcall(fn)
  return M.ok(not ok and tostring(msg):find(pattern, 1, true) ~= nil,
    string.format("%s (error: %s)", what, tostring(msg)))
end

function M.done()
  if M.failures > 0 then error(M.failures .. " check(s) failed", 0) end
  print("all checks passed")
end

return M
