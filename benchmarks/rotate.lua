-- wrk script: send the requests listed in a manifest, in turn, and print the results as JSON.
--
--   wrk -t2 -c8 -d10s -s benchmarks/rotate.lua http://127.0.0.1:PORT -- MANIFEST
--
-- MANIFEST has one request per line: METHOD PATH BODY_FILE [TOKENS_FILE] (the body file holds the exact
-- bytes; the tokens file, one bearer JWT per line, each usable once). THREADS is wrk's -t: each thread
-- takes every THREADS-th token, so no two threads send the same one. Requests without tokens are formatted
-- once in init(); with tokens, request() formats each with the next token of its thread's share.

local prepared = {}
local next_index = 0
local thread_count = 0
local token_lists = {}
local token_next = {}
local tokens_out = 0

function setup(thread)
  thread:set("offset", thread_count)
  thread_count = thread_count + 1
end

local function share_of(file, threads)
  if token_lists[file] == nil then
    local mine, index = {}, 0
    for line in io.lines(file) do
      if line ~= "" then
        if index % threads == (offset or 0) % threads then
          mine[#mine + 1] = line
        end
        index = index + 1
      end
    end
    token_lists[file] = mine
    token_next[file] = 0
  end
  return file
end

function init(args)
  local manifest = args[1]
  local threads = tonumber(args[2] or "1")
  if manifest == nil then
    error("usage: wrk ... -s rotate.lua URL -- MANIFEST [THREADS]")
  end
  for line in io.lines(manifest) do
    local method, path, file, tokens = line:match("^(%S+)%s+(%S+)%s+(%S+)%s*(%S*)$")
    if method ~= nil then
      local handle = assert(io.open(file, "rb"))
      local body = handle:read("*a")
      handle:close()
      if tokens ~= "" then
        prepared[#prepared + 1] = {method = method, path = path, body = body, tokens = share_of(tokens, threads)}
      else
        prepared[#prepared + 1] = wrk.format(method, path, {["Content-Type"] = "application/json"}, body)
      end
    end
  end
  if #prepared == 0 then
    error("no requests in " .. manifest)
  end
  next_index = (offset or 0) % #prepared
end

function request()
  next_index = next_index % #prepared + 1
  local chosen = prepared[next_index]
  if type(chosen) == "string" then
    return chosen
  end
  local position = token_next[chosen.tokens] + 1
  local token = token_lists[chosen.tokens][position]
  if token == nil then
    tokens_out = tokens_out + 1  -- sent without a token: the 401 shows in the status errors
    token = "exhausted"
  else
    token_next[chosen.tokens] = position
  end
  return wrk.format(chosen.method, chosen.path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, chosen.body)
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
