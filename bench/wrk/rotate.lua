-- The machine-token request for wrk, each request with the next of many tokens:
--
--   wrk -s bench/wrk/rotate.lua http://127.0.0.1:PORT/v1/projects/ORG_ID -- TOKENS_FILE
--
-- TOKENS_FILE holds one machine token a line. Each wrk thread builds the requests once, one per
-- token (`Authorization: Bearer cl_mt_…`, the URL's path), and sends them in turn from an offset
-- of its own, so that the threads do not move in step; nothing is built while the load runs.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "summary.lua")

local thread_count = 0

-- Runs in the main Lua state once per thread before they start: numbers the threads.
function setup(thread)
   thread:set("id", thread_count)
   thread_count = thread_count + 1
end

local requests = {}
local next_request = 1

function init(args)
   local file = args[1] or error("rotate.lua: pass the tokens file after --")
   for token in io.lines(file) do
      if token ~= "" then
         requests[#requests + 1] = wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. token })
      end
   end
   if #requests == 0 then
      error("rotate.lua: " .. file .. " holds no token")
   end
   -- Threads start spread over the list.
   next_request = ((tonumber(id) or 0) * 7919) % #requests + 1
end

function request()
   local request = requests[next_request]
   next_request = next_request % #requests + 1
   return request
end
