-- wrk script for scripts/bench history: POST /api/channels/CHANNEL/publish with
-- Content-Type: application/json and the body {"data": {"text": "...", "n": 1}}
-- (about 60 bytes), the same request every time.
--
--   wrk -t2 -c100 -d10s --latency -s channel-publish.lua http://127.0.0.1:PORT -- CHANNEL [count]
--
-- With "count" responses are counted by status code and done() prints one line
--   statuses: 202=N 503=M

local threads = {}

function setup(thread)
   table.insert(threads, thread)
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

function response(status, headers, body)
   local k = tostring(status)
   statuses[k] = (statuses[k] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   local any = false
   for _, t in ipairs(threads) do
      local s = t:get("statuses")
      if s then
         for k, v in pairs(s) do
            total[k] = (total[k] or 0) + v
            any = true
         end
      end
   end
   if any then
      local keys = {}
      for k in pairs(total) do keys[#keys + 1] = k end
      table.sort(keys)
      local parts = {}
      for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. total[k] end
      io.write("statuses: " .. table.concat(parts, " ") .. "\n")
   end
end
