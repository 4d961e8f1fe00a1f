-- wrk script for scripts/bench sessions: GET /api/sessions/<id>, each request with an id
-- picked at random from a file of session ids, one a line.
--
--   wrk -t2 -c100 -d10s --latency -s sessions-get.lua http://127.0.0.1:PORT -- IDS_FILE [count]
--
-- The file may also be named by $BENCH_SESSION_IDS. With a second argument "count" (or
-- $BENCH_COUNT_STATUS=1) responses are counted by status code and done() prints one line
--   statuses: 200=N 404=M
-- (this makes wrk parse every response, which costs it CPU; without it, wrk's own
-- "Non-2xx or 3xx responses" is the only count).

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "statuses.lua")
dofile(dir .. "ids.lua")

function init(args)
   random_requests(args, "sessions-get.lua", function(sid)
      return wrk.format("GET", "/api/sessions/" .. sid)
   end)
end
