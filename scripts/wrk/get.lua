-- wrk: reads of keys r1..r1000 (prefilled): linearizable unless STALE=1 or
-- LEVEL=<read level> (raftkv); hraftd (HRAFTD=1) only has local reads, GET /key/K
local n = 0
local stale = os.getenv("STALE") == "1"
local level = os.getenv("LEVEL")
local hraftd = os.getenv("HRAFTD") == "1"
request = function()
  n = n + 1
  local key = "r" .. ((n % 1000) + 1)
  if hraftd then
    return wrk.format("GET", "/key/" .. key)
  end
  return wrk.format("GET", "/get?key=" .. key .. (stale and "&stale=true" or "")
                    .. (level and ("&level=" .. level) or ""))
end
