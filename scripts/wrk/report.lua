-- appended to the scripts above by bench-wrk.sh: one machine-readable line
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format("WRK ops=%.0f p50=%.2f p99=%.2f errors=%d requests=%d\n",
           summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
           errors, summary.requests))
end
