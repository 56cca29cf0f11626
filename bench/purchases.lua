-- wrk script for bench/pos.py: POST /api/v1/purchases for existing members.
--
--   wrk -t2 -c16 -d10s -s bench/purchases.lua URL -- MEMBERS KEY OCCURRED_AT TAG REDEEM_EVERY
--
-- Each request is a new receipt ("TAG-THREAD-COUNTER"), one line, for a member picked at
-- random from 1..MEMBERS; every REDEEM_EVERY-th request of a thread also redeems 50
-- points (0: never). At the end `done` prints one machine-readable line, "BENCH k=v ...",
-- with latencies in milliseconds and responses counted by status.

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Per thread (each wrk thread runs its own Lua state).
local members, occurred_at, tag, redeem_every
local counter = 0
local headers

function init(args)
  members = tonumber(args[1]) or 1000
  local key = args[2] or ""
  occurred_at = args[3] or "2026-01-01T10:00:00+00:00"
  tag = args[4] or "r"
  redeem_every = tonumber(args[5]) or 5
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }
  math.randomseed(os.time() * 1000 + thread_id)
  c2xx, c409, c4xx, c5xx, cother = 0, 0, 0, 0, 0
end

function request()
  counter = counter + 1
  local member = math.random(1, members)
  local cents = math.random(100, 9999)
  local price = string.format("%d.%02d", math.floor(cents / 100), cents % 100)
  local redeem = ""
  if redeem_every > 0 and counter % redeem_every == 0 then
    redeem = ',"redeem_points":50'
  end
  local body = string.format(
    '{"receipt_id":"%s-%d-%d","occurred_at":"%s","currency":"EUR","total":"%s",' ..
    '"customer":{"id":%d},"lines":[{"sku":"SKU%d","quantity":1,"unit_price":"%s"}]%s}',
    tag, thread_id, counter, occurred_at, price, member, cents % 50, price, redeem)
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    c2xx = c2xx + 1
  elseif status == 409 then
    c409 = c409 + 1
  elseif status >= 400 and status < 500 then
    c4xx = c4xx + 1
  elseif status >= 500 then
    c5xx = c5xx + 1
  else
    cother = cother + 1
  end
  if status >= 300 and (c409 + c4xx + c5xx + cother) <= 3 then
    -- the first few failures, to see why
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
