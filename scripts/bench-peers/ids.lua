-- What the bench's wrk scripts on seeded sessions share. A script loads statuses.lua and
-- then this file from beside itself:
--   local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
--   dofile(dir .. "statuses.lua")
--   dofile(dir .. "ids.lua")
-- It gets setup() (each thread numbered in its global id, and counted by statuses.lua),
-- read_ids(path, script): the session ids of a file, one a line (scripts/bench writes
-- it after seeding), and for a request on an id picked at random per request:
-- random_requests(args, script, make) in init(), with make(sid) building one request,
-- and request().

local next_thread = 1

function setup(thread)
   thread:set("id", next_thread)
   next_thread = next_thread + 1
   count_thread(thread)
end

function read_ids(path, script)
   if not path then
      error(script .. ": no ids file (pass it after -- or in $BENCH_SESSION_IDS)")
   end
   local f = assert(io.open(path, "r"))
   local ids = {}
   for line in f:lines() do
      local sid = line:match("^%s*(%S+)%s*$")
      if sid then
         ids[#ids + 1] = sid
      end
   end
   f:close()
   if #ids == 0 then
      error(script .. ": no ids in " .. path)
   end
   return ids
end

-- The requests, built once per thread so that request() is a table lookup; answers are
-- counted by status only with "count" after the ids file (or $BENCH_COUNT_STATUS=1).
function random_requests(args, script, make)
   math.randomseed(os.time() * 1000 + (id or 0))
   reqs = {}
   for i, sid in ipairs(read_ids(args[1] or os.getenv("BENCH_SESSION_IDS"), script)) do
      reqs[i] = make(sid)
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
