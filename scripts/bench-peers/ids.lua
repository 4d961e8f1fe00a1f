-- What the bench's wrk scripts on seeded sessions share: read_ids(path) returns the
-- session ids of a file, one a line (scripts/bench writes it after seeding). A script
-- loads this file from beside itself
--   dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "ids.lua")

function read_ids(path, script)
   if not path then
      error(script .. ": no ids file (pass it after -- or in $BENCH_SESSION_IDS)")
   end
   local f = assert(io.open(path, "r"))
   local ids = {}
   for line in f:lines() do
      local id = line:match("^%s*(%S+)%s*$")
      if id then
         ids[#ids + 1] = id
      end
   end
   f:close()
   if #ids == 0 then
      error(script .. ": no ids in " .. path)
   end
   return ids
end
