-- What the bench's wrk scripts share: with counting on, response() counts each answer
-- by its status code in its thread, and done() sums the threads and prints one line
--   statuses: 200=N 404=M
-- which scripts/bench reads. A script loads this file from beside itself
--   dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "statuses.lua")
-- calls count_thread(thread) from its setup(), sets statuses = {} in its init(), and
-- sets response = nil there when it does not count (wrk then skips parsing answers).

local threads = {}

function count_thread(thread)
   table.insert(threads, thread)
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
