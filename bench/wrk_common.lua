-- What every bench wrk script shares: thread bookkeeping, counting answers by status, and done() printing one
-- line "WRKJSON {...}" with counts and latency percentiles (microseconds) for the harness to parse.
-- Loaded by bench/post_reports.lua and bench/get_paths.lua with dofile().

threads = {}
next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

-- Each thread's counters, set up by the script's init().
function reset_counts()
  sent, n2xx, non2xx, first_error = 0, 0, 0, ""
  statuses = {}
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 200 and status <= 299 then
    n2xx = n2xx + 1
  else
    non2xx = non2xx + 1
    if first_error == "" then first_error = status .. " " .. string.sub(body or "", 1, 400) end
  end
end

local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local ok, bad, err, codes, sent_max = 0, 0, "", {}, 0
  for _, t in ipairs(threads) do
    sent_max = math.max(sent_max, t:get("sent"))
    ok = ok + t:get("n2xx")
    bad = bad + t:get("non2xx")
    local e = t:get("first_error")
    if err == "" and e ~= "" then err = e end
    for code, count in pairs(t:get("statuses")) do codes[code] = (codes[code] or 0) + count end
  end
  local parts = {}
  for code, count in pairs(codes) do parts[#parts + 1] = string.format('"%d":%d', code, count) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"ok_2xx":%d,"non_2xx":%d,"statuses":{%s},' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"wrk_status_errors":%d,' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d},"first_error":%s,' ..
    '"sent_max":%d}\n',
    summary.requests, summary.duration, summary.bytes, ok, bad, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), jstr(err), sent_max))
end
