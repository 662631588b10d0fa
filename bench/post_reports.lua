-- wrk script: POST street-light fault reports at precomputed points, each with a unique client_id.
--
--   wrk -t2 -c16 -d30s -s bench/post_reports.lua URL -- COORDS PATH TOKEN PREFIX OBSERVED_AT [EXTRA]
--
-- COORDS: a text file of "lat lon" lines (written by bench/intake.py); PATH: the endpoint path;
-- TOKEN: a bearer token, or "-" for none; PREFIX: 8 hex digits, fresh for every phase so client_ids
-- never repeat across phases; OBSERVED_AT: an ISO 8601 time fixed at the start of the run; EXTRA (optional):
-- members added verbatim to every body, e.g. ,"contact":{...} (bench/notify_cost.py).
-- done() prints one line "WRKJSON {...}" with counts and latency percentiles (microseconds).

local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

function init(args)
  coords_file, path, token, prefix, observed_at = args[1], args[2], args[3], args[4], args[5]
  extra = args[6] or ""
  lats, lons = {}, {}
  for line in io.lines(coords_file) do
    local a, b = line:match("^(%S+)%s+(%S+)$")
    -- kept as strings: they go verbatim into the JSON body
    if a then lats[#lats + 1] = a; lons[#lons + 1] = b end
  end
  if #lats == 0 then error("no coordinates in " .. tostring(coords_file)) end
  headers = { ["Content-Type"] = "application/json" }
  if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
  sent, n2xx, non2xx, first_error = 0, 0, 0, ""
  statuses = {}
  math.randomseed(tid * 104729 + os.time())
end

function request()
  sent = sent + 1
  local i = math.random(#lats)
  -- UUID: PREFIX-tttt-4000-8000-nnnnnnnnnnnn (thread, per-thread counter): unique within the phase.
  local body = string.format(
    '{"client_id":"%s-%04x-4000-8000-%012x","category":"street_light","lat":%s,"lon":%s,' ..
    '"accuracy_m":5,"observed_at":"%s","answers":{"fault":"out"}%s}',
    prefix, tid, sent, lats[i], lons[i], observed_at, extra)
  return wrk.format("POST", path, headers, body)
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
  local ok, bad, err, codes = 0, 0, "", {}
  for _, t in ipairs(threads) do
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
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d},"first_error":%s}\n',
    summary.requests, summary.duration, summary.bytes, ok, bad, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), jstr(err)))
end
