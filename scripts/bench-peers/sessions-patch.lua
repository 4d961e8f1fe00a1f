-- wrk script for scripts/bench sessions: PATCH /api/sessions/<id> with a small JSON merge
-- patch of the data (two keys of the ~200 bytes sessions-post.lua makes), each request
-- with an id picked at random from a file of session ids, one a line. No If-Match: the
-- connections would race each other for versions and measure 412s.
--
--   wrk -t2 -c100 -d10s --latency -s sessions-patch.lua http://127.0.0.1:PORT -- IDS_FILE [count]
--
-- "count" (or $BENCH_COUNT_STATUS=1) counts the answers by status as statuses.lua says.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "statuses.lua")
dofile(dir .. "ids.lua")

function init(args)
   local headers = { ["Content-Type"] = "application/json" }
   random_requests(args, "sessions-patch.lua", function(sid)
      local body = string.format('{"data":{"theme":"light","cart":[%d,%d]}}',
                                 math.random(1, 99999), math.random(1, 99999))
      return wrk.format("PATCH", "/api/sessions/" .. sid, headers, body)
   end)
end
