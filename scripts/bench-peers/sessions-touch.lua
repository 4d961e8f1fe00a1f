-- wrk script for scripts/bench sessions: POST /api/sessions/<id>/touch, each request with
-- an id picked at random from a file of session ids, one a line.
--
--   wrk -t2 -c100 -d10s --latency -s sessions-touch.lua http://127.0.0.1:PORT -- IDS_FILE [count]
--
-- "count" (or $BENCH_COUNT_STATUS=1) counts the answers by status as statuses.lua says.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "statuses.lua")
dofile(dir .. "ids.lua")

function init(args)
   random_requests(args, "sessions-touch.lua", function(sid)
      return wrk.format("POST", "/api/sessions/" .. sid .. "/touch")
   end)
end
