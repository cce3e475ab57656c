-- wrk script: send the requests listed in a manifest, in turn, and print the results as JSON.
--
--   wrk -t2 -c8 -d10s -s benchmarks/rotate.lua http://127.0.0.1:PORT -- MANIFEST
--
-- MANIFEST has one request per line: METHOD PATH BODY_FILE (the body file holds the exact bytes).
-- Requests are formatted once in init(); request() only picks the next one. Each wrk thread starts at a
-- different place in the list so that the mix is the same whatever the number of threads.

local prepared = {}
local next_index = 0
local thread_count = 0

function setup(thread)
  thread:set("offset", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  local manifest = args[1]
  if manifest == nil then
    error("usage: wrk ... -s rotate.lua URL -- MANIFEST")
  end
  for line in io.lines(manifest) do
    local method, path, file = line:match("^(%S+)%s+(%S+)%s+(.+)$")
    if method ~= nil then
      local handle = assert(io.open(file, "rb"))
      local body = handle:read("*a")
      handle:close()
      prepared[#prepared + 1] = wrk.format(method, path, {["Content-Type"] = "application/json"}, body)
    end
  end
  if #prepared == 0 then
    error("no requests in " .. manifest)
  end
  next_index = (offset or 0) % #prepared
end

function request()
  next_index = next_index % #prepared + 1
  return prepared[next_index]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, ' ..
    '"p50": %d, "p90": %d, "p95": %d, "p99": %d, "p99_9": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9)))
end
