-- wrk script for scripts/bench sessions: PATCH /api/sessions/<id> with a small JSON merge
-- patch of the data (two keys of the ~200 bytes sessions-post.lua makes), each request
-- with an id picked at random from a file of session ids, one a line. No If-Match: the
-- connections would race each other for versions and measure 412s.
--
--   wrk -t2 -c100 -d10s --latency -s sessions-patch.lua http://127.0.0.1:PORT -- IDS_FILE [count]
--
-- Requests are built once per thread in init(), so request() is a table lookup; "count"
-- (or $BENCH_COUNT_STATUS=1) counts the answers by status as statuses.lua says.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "statuses.lua")
dofile(dir .. "ids.lua")
local next_id = 1

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   count_thread(thread)
end

function init(args)
   math.randomseed(os.time() * 1000 + (id or 0))
   local headers = { ["Content-Type"] = "application/json" }
   reqs = {}
   for i, sid in ipairs(read_ids(args[1] or os.getenv("BENCH_SESSION_IDS"), "sessions-patch.lua")) do
      local body = string.format('{"data":{"theme":"light","cart":[%d,%d]}}',
                                 math.random(1, 99999), math.random(1, 99999))
      reqs[i] = wrk.format("PATCH", "/api/sessions/" .. sid, headers, body)
   end
   nreqs = #reqs
   statuses = {}
   if not (args[2] == "count" or os.getenv("BENCH_COUNT_STATUS") == "1") then
      response = nil
   end
end

function request()
   return reqs[math.random(nreqs)]
end
