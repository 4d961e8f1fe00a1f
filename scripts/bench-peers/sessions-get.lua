-- wrk script for scripts/bench sessions: GET /api/sessions/<id>, each request with an id
-- picked at random from a file of session ids, one a line.
--
--   wrk -t2 -c100 -d10s --latency -s sessions-get.lua http://127.0.0.1:PORT -- IDS_FILE
--
-- The file may also be named by $BENCH_SESSION_IDS. Requests are built once per thread in
-- init(), so request() is a table lookup. With a second argument "count" (or
-- $BENCH_COUNT_STATUS=1) responses are counted by status code and done() prints one line
--   statuses: 200=N 404=M
-- (this makes wrk parse every response, which costs it CPU; without it, wrk's own
-- "Non-2xx or 3xx responses" is the only count).

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "statuses.lua")
local next_id = 1

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   count_thread(thread)
end

local function want_count(args)
   return args[2] == "count" or os.getenv("BENCH_COUNT_STATUS") == "1"
end

function init(args)
   local path = args[1] or os.getenv("BENCH_SESSION_IDS")
   if not path then
      error("sessions-get.lua: no ids file (pass it after -- or in $BENCH_SESSION_IDS)")
   end
   local f = assert(io.open(path, "r"))
   reqs = {}
   for line in f:lines() do
      local id = line:match("^%s*(%S+)%s*$")
      if id then
         reqs[#reqs + 1] = wrk.format("GET", "/api/sessions/" .. id)
      end
   end
   f:close()
   if #reqs == 0 then
      error("sessions-get.lua: no ids in " .. path)
   end
   nreqs = #reqs
   math.randomseed(os.time() * 1000 + (id or 0))
   statuses = {}
   if not want_count(args) then
      response = nil
   end
end

function request()
   return reqs[math.random(nreqs)]
end
