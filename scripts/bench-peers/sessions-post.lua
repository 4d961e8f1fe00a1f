-- wrk script for scripts/bench sessions: POST /api/sessions with Content-Type:
-- application/json and a body {"user": "u<random in 0..99999>", "data": {...}} holding
-- about 200 bytes of data.
--
--   wrk -t2 -c100 -d10s --latency -s sessions-post.lua http://127.0.0.1:PORT [-- count]
--
-- 4096 requests (random users, random data) are built once per thread in init(), so
-- request() is a table lookup. With the argument "count" (or $BENCH_COUNT_STATUS=1)
-- responses are counted by status code and done() prints one line
--   statuses: 201=N 429=M
-- With the arguments "record FILE" they are counted and the id of every session created
-- is written to FILE, one a line, for the runs on seeded sessions that follow (PATCH,
-- touch, DELETE).

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "statuses.lua")
local next_id = 1
local USERS = 100000
local NREQS = 4096
local recorded = {}

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   count_thread(thread)
   recorded[#recorded + 1] = thread
end

local function hex(n)
   local t = {}
   for i = 1, n do t[i] = string.format("%x", math.random(0, 15)) end
   return table.concat(t)
end

local function body()
   -- about 200 bytes of "data" once serialized
   local user = "u" .. math.random(0, USERS - 1)
   local data = string.format(
      '{"name":"User %s","email":"%s@example.com","roles":["reader","writer"],' ..
      '"locale":"en-GB","theme":"dark","cart":[%d,%d,%d],"csrf":"%s","ip":"10.%d.%d.%d"}',
      user, user, math.random(1, 99999), math.random(1, 99999), math.random(1, 99999),
      hex(32), math.random(0, 255), math.random(0, 255), math.random(1, 254))
   return string.format('{"user":"%s","data":%s}', user, data)
end

function init(args)
   math.randomseed(os.time() * 1000 + (id or 0))
   local headers = { ["Content-Type"] = "application/json" }
   reqs = {}
   for i = 1, NREQS do
      reqs[i] = wrk.format("POST", "/api/sessions", headers, body())
   end
   statuses = {}
   if args[1] == "record" then
      record, created = args[2], {}
   elseif not (args[1] == "count" or os.getenv("BENCH_COUNT_STATUS") == "1") then
      response = nil
   end
end

local count = response
function response(status, headers, body)
   count(status, headers, body)
   if record and status == 201 then
      created[#created + 1] = body:match('"id":"([^"]+)"')
   end
end

local count_done = done
function done(summary, latency, requests)
   count_done(summary, latency, requests)
   local f
   for _, t in ipairs(recorded) do
      local path, ids = t:get("record"), t:get("created")
      if path and ids then
         f = f or assert(io.open(path, "w"))
         for _, sid in ipairs(ids) do f:write(sid, "\n") end
      end
   end
   if f then f:close() end
end

function request()
   return reqs[math.random(NREQS)]
end
