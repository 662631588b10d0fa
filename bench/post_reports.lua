-- wrk script: POST street-light fault reports at precomputed points, each with a unique client_id.
--
--   wrk -t2 -c16 -d30s -s bench/post_reports.lua URL -- COORDS PATH TOKEN PREFIX OBSERVED_AT [EXTRA [START THREADS]]
--
-- COORDS: a text file of "lat lon" lines (written by bench/intake.py); PATH: the endpoint path;
-- TOKEN: a bearer token, or "-" for none; PREFIX: 8 hex digits, fresh for every phase so client_ids
-- never repeat across phases; OBSERVED_AT: an ISO 8601 time fixed at the start of the run; EXTRA (optional):
-- members added to every body, e.g. ,"contact":{...} (bench/notify_cost.py), where {n} becomes a number unique
-- to the request within the phase (9 digits: a different reporter's email and mobile for every report);
-- START and THREADS (optional; EXTRA may be ""): take the points in order from line START (0-based), each once,
-- the threads interleaved (thread t takes START + t - 1, then every THREADS-th line), instead of at random: every report
-- of the phase is about a different lamp column, and the harness starts the next phase where this one stopped
-- (from "sent_max" in done()'s line), so no report of the run repeats another's point.
-- done() prints one line "WRKJSON {...}" with counts and latency percentiles (microseconds).

-- The shared parts (setup, response, done) live beside this script.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

function init(args)
  coords_file, path, token, prefix, observed_at = args[1], args[2], args[3], args[4], args[5]
  extra = args[6] or ""
  start, nthreads = tonumber(args[7] or ""), tonumber(args[8] or "1")
  has_n = extra:find("{n}", 1, true) ~= nil
  lats, lons = {}, {}
  for line in io.lines(coords_file) do
    local a, b = line:match("^(%S+)%s+(%S+)$")
    -- kept as strings: they go verbatim into the JSON body
    if a then lats[#lats + 1] = a; lons[#lons + 1] = b end
  end
  if #lats == 0 then error("no coordinates in " .. tostring(coords_file)) end
  headers = { ["Content-Type"] = "application/json" }
  if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
  reset_counts()
  math.randomseed(tid * 104729 + os.time())
end

function request()
  sent = sent + 1
  local i
  if start then
    i = (start + (tid - 1) + nthreads * (sent - 1)) % #lats + 1  -- past the end: from the top again
  else
    i = math.random(#lats)
  end
  local more = extra
  if has_n then more = extra:gsub("{n}", string.format("%09d", (tid * 10000000 + sent) % 1000000000)) end
  -- UUID: PREFIX-tttt-4000-8000-nnnnnnnnnnnn (thread, per-thread counter): unique within the phase.
  local body = string.format(
    '{"client_id":"%s-%04x-4000-8000-%012x","category":"street_light","lat":%s,"lon":%s,' ..
    '"accuracy_m":5,"observed_at":"%s","answers":{"fault":"out"}%s}',
    prefix, tid, sent, lats[i], lons[i], observed_at, more)
  return wrk.format("POST", path, headers, body)
end
