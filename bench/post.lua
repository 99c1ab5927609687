-- wrk script: POSTs one GraphQL request body over and over and counts the responses that
-- are not 200 or whose body carries "errors" (a GraphQL server answers errors with 200).
-- Environment: BENCH_BODY_FILE (the JSON body), BENCH_API_KEY (optional X-API-Key).
-- done() prints one line, `BENCH {json}`, that bench/run.py reads.

local function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local text = f:read("*a")
  f:close()
  return text
end

wrk.method = "POST"
wrk.body = read_file(os.getenv("BENCH_BODY_FILE"))
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then
  wrk.headers["X-API-Key"] = key
end

-- Each wrk thread runs its own Lua state: setup() keeps the threads so done() can add up
-- their counters.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad_status = 0
  with_errors = 0
  responses = 0
  first_bad = ""
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 then
    bad_status = bad_status + 1
  elseif string.find(body, '"errors"', 1, true) then
    with_errors = with_errors + 1
  else
    return
  end
  if first_bad == "" then
    first_bad = tostring(status) .. " " .. string.sub(body, 1, 300)
  end
end

local function json_string(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, requests)
  local bad, errors, seen, sample = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("bad_status")
    errors = errors + thread:get("with_errors")
    seen = seen + thread:get("responses")
    if sample == "" then
      sample = thread:get("first_bad")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "responses": %d, "bad_status": %d, '
      .. '"with_errors": %d, "socket_errors": %d, "mean_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "first_bad": %s}\n',
    summary.requests, summary.duration, seen, bad, errors,
    e.connect + e.read + e.write + e.timeout, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    json_string(sample)))
end
