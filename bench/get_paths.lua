-- wrk script: GET paths read from a file, one chosen at random per request (reads under load).
--
--   wrk -t2 -c16 -d30s -s bench/get_paths.lua URL -- PATHS - TOKEN - -
--
-- PATHS: a text file of request paths ("/api/v1/jobs/J-001234", "/ogc/collections/jobs/items?bbox=…"), one a
-- line (written by bench/suite.py); TOKEN: a bearer token, or "-" for none. The other two arguments are
-- ignored (the same argument list as post_reports.lua, so one harness drives both).
-- done() prints one line "WRKJSON {...}" with counts and latency percentiles (microseconds).

-- The shared parts (setup, response, done) live beside this script.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

function init(args)
  local paths_file, token = args[1], args[3]
  paths = {}
  for line in io.lines(paths_file) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  if #paths == 0 then error("no paths in " .. tostring(paths_file)) end
  headers = {}
  if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
  reset_counts()
  math.randomseed(tid * 104729 + os.time())
end

function request()
  sent = sent + 1
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
