-- wrk: writes with unique keys and 64-byte values (raftkv GET /set, or hraftd POST /key with HRAFTD=1)
local n = 0
local value = string.rep("v", 64)
local prefix = "w" .. tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000)) .. "-"
local hraftd = os.getenv("HRAFTD") == "1"
request = function()
  n = n + 1
  local key = prefix .. n
  if hraftd then
    return wrk.format("POST", "/key", {["Content-Type"] = "application/json"},
                      '{"' .. key .. '":"' .. value .. '"}')
  end
  return wrk.format("GET", "/set?key=" .. key .. "&value=" .. value)
end
