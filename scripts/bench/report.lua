-- wrk script for `make bench`: one machine-readable line at the end of a run.
-- Defines only done(), so wrk keeps its fast path (no per-request Lua).
-- BENCH_POST_BYTES=N in the environment makes every request a POST of N bytes (scenario 2c):
-- "0123456789abcdef" repeated, the pattern scripts/bench/sink.c checks byte for byte.
local post = tonumber(os.getenv("BENCH_POST_BYTES") or "")
if post then
   wrk.method = "POST"
   wrk.body = string.rep("0123456789abcdef", math.floor(post / 16))
   wrk.headers["Content-Type"] = "application/octet-stream"
end

-- %.0f, not %d: LuaJIT's %d goes through a 32-bit int and clips byte counts above 2 GiB.
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%.0f duration_us=%.0f bytes=%.0f err_connect=%.0f err_read=%.0f " ..
      "err_write=%.0f err_status=%.0f err_timeout=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
