-- wrk script for scripts/bench sessions: DELETE /api/sessions/<id>, every id of a file of
-- session ids (one a line) once: thread k of n deletes the ids k, k + n, k + 2n, ... in
-- turn, and stops when its share is sent, so that the run never measures the cheaper 404
-- of an id already deleted. Seed more
-- sessions than the run can delete for a run that lasts its whole duration.
--
--   wrk -t2 -c100 -d10s --latency -s sessions-delete.lua http://127.0.0.1:PORT -- IDS_FILE THREADS
--
-- Answers are always counted by status (statuses.lua): stopping needs response().

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "statuses.lua")
dofile(dir .. "ids.lua")

function init(args)
   local all = read_ids(args[1] or os.getenv("BENCH_SESSION_IDS"), "sessions-delete.lua")
   local nthreads = tonumber(args[2] or "2")
   reqs = {}
   for i = id or 1, #all, nthreads do
      reqs[#reqs + 1] = wrk.format("DELETE", "/api/sessions/" .. all[i])
   end
   sent = 0
   statuses = {}
end

function request()
   sent = sent + 1
   return reqs[sent <= #reqs and sent or #reqs]
end

-- Stop at the first answer after the last id went out: nothing is sent twice (which
-- would be a 404), at the price of the few answers still in flight going uncounted.
local count = response
function response(status, headers, body)
   count(status, headers, body)
   if sent >= #reqs then
      wrk.thread:stop()
   end
end
