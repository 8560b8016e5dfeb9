-- wrk script for `make bench-redirect`: every request is GET /c/{token} with a token drawn at
-- random from the file named by BENCH_TOKENS, the Host of the bench domain, a phone's
-- User-Agent and a random client address. BENCH_DELAY_MS > 0 (fractional allowed) paces
-- each connection (the half-rate latency run).
-- done() prints one machine-readable RESULT line for scripts/bench-redirect.sh.

local tokens = {}
local host = os.getenv("BENCH_HOST") or "go.bench.example"
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local headers = {
  ["Host"] = host,
  ["User-Agent"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
  ["Accept-Language"] = "en-US,en;q=0.9",
}

local seq = 0
function setup(thread)
  seq = seq + 1
  thread:set("seed", seq)
end

function init(args)
  local path = os.getenv("BENCH_TOKENS")
  for line in io.lines(path) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  if #tokens == 0 then error("no tokens in " .. tostring(path)) end
  math.randomseed(os.time() * 1000 + (seed or 0))
end

-- Each request comes from a random phone address (X-Forwarded-For, trusted from loopback by the
-- proxy), as real traffic does: one address for every click would be a gateway scanner to the
-- classifier, and measure its flood bound rather than the click path.
function request()
  headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.random(0, 255),
    math.random(0, 255), math.random(1, 254))
  return wrk.format("GET", "/c/" .. tokens[math.random(#tokens)], headers)
end

-- wrk waits whole milliseconds: a fractional pace is met on average by waiting the next whole
-- number of milliseconds with the fraction's probability.
if pace > 0 then
  local whole = math.floor(pace)
  local frac = pace - whole
  function delay()
    if math.random() < frac then return whole + 1 end
    return whole
  end
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f status_errors=%d socket_errors=%d\n",
    summary.requests, summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, e.status,
    e.connect + e.read + e.write + e.timeout))
end
