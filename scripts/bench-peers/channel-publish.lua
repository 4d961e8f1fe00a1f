-- wrk script for scripts/bench history: POST /api/channels/CHANNEL/publish with
-- Content-Type: application/json and the body {"data": {"text": "...", "n": 1}}
-- (about 60 bytes), the same request every time.
--
--   wrk -t2 -c100 -d10s --latency -s channel-publish.lua http://127.0.0.1:PORT -- CHANNEL [count]
--
-- With "count" responses are counted by status code and done() prints one line
--   statuses: 202=N 503=M

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "statuses.lua")

function setup(thread)
   count_thread(thread)
end

function init(args)
   local channel = args[1] or "bench"
   req = wrk.format("POST", "/api/channels/" .. channel .. "/publish",
                    { ["Content-Type"] = "application/json" },
                    '{"data":{"text":"a message of some forty bytes, say","n":1}}')
   statuses = {}
   if args[2] ~= "count" then
      response = nil
   end
end

function request()
   return req
end
