-- wrk script for `make bench`: one machine-readable line at the end of a run.
-- Defines only done(), so wrk keeps its fast path (no per-request Lua).
-- %.0f, not %d: LuaJIT's %d goes through a 32-bit int and clips byte counts above 2 GiB.
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%.0f duration_us=%.0f bytes=%.0f err_connect=%.0f err_read=%.0f " ..
      "err_write=%.0f err_status=%.0f err_timeout=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
