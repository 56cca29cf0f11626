-- wrk script for bench/recommend_till.py: GET a path for random members.
--
--   wrk -t2 -c16 -d10s -s bench/reads.lua URL -- MEMBERS KEY PATH
--
-- PATH's "%d" becomes a member id picked at random from 1..MEMBERS (a path without one
-- is asked as it is). At the end `done` prints one line, "BENCH k=v ...", with latencies
-- in milliseconds and responses counted by status, as bench/purchases.lua does.

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local members, path, headers

function init(args)
  members = tonumber(args[1]) or 1000
  headers = {["Authorization"] = "Bearer " .. (args[2] or "")}
  path = args[3] or "/healthz"
  math.randomseed(os.time() * 1000 + thread_id)
  c2xx, c409, c4xx, c5xx, cother = 0, 0, 0, 0, 0
end

function request()
  local target = path
  if string.find(path, "%%d") then
    target = string.format(path, math.random(1, members))
  end
  return wrk.format("GET", target, headers)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    c2xx = c2xx + 1
  elseif status >= 400 and status < 500 then
    c4xx = c4xx + 1
  elseif status >= 500 then
    c5xx = c5xx + 1
  else
    cother = cother + 1
  end
  if status >= 300 and (c4xx + c5xx + cother) <= 3 then
    io.stderr:write(string.format("status %d: %s\n", status, body))
  end
end

function done(summary, latency, requests)
  local sums = {c2xx = 0, c409 = 0, c4xx = 0, c5xx = 0, cother = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(sums) do
      sums[name] = sums[name] + (thread:get(name) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_s=%.3f rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f " ..
    "max_ms=%.2f non2xx=%d s2xx=%d s409=%d s4xx=%d s5xx=%d sother=%d " ..
    "connect_err=%d read_err=%d write_err=%d timeouts=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, e.status,
    sums.c2xx, sums.c409, sums.c4xx, sums.c5xx, sums.cother,
    e.connect, e.read, e.write, e.timeout))
end
