-- wrk script: POST a form body, with a bearer token from the environment.
--   WRK_BODY     the request body (application/x-www-form-urlencoded)
--   WRK_TOKEN    one token for every request, or
--   WRK_TOKENS   a file of tokens, one per line, each request taking the next
--                (a new token for every request while the file lasts)
-- done() prints one line, "WRK_JSON {...}", that http_load.py reads.

local body = os.getenv("WRK_BODY") or ""
local token = os.getenv("WRK_TOKEN")
local tokens = {}
local next_token = 0

init = function(args)
  local path = os.getenv("WRK_TOKENS")
  if path then
    for line in io.lines(path) do
      tokens[#tokens + 1] = line
    end
  end
end

request = function()
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  if #tokens > 0 then
    next_token = next_token % #tokens + 1
    headers["Authorization"] = "Bearer " .. tokens[next_token]
  elseif token then
    headers["Authorization"] = "Bearer " .. token
  end
  return wrk.format("POST", nil, headers, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
