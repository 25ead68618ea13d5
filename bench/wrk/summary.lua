-- wrk's end-of-run hook for bench/run.sh: one line, "wrk-summary {json}", with what wrk's own
-- report rounds or leaves out (p99.9, the error counts by kind, the exact duration). run.sh reads
-- the rest of its figures from wrk's text report; it runs `wrk -s bench/wrk/summary.lua` for the
-- scenarios without a script of their own, and rotate.lua loads this file.

function done(summary, latency, requests)
   local errors = summary.errors
   local function ms(percentile)
      return latency:percentile(percentile) / 1000
   end
   io.write(string.format(
      'wrk-summary {"requests": %d, "durationSeconds": %.6f, "p50Ms": %.3f, "p99Ms": %.3f, "p999Ms": %.3f, '
         .. '"maxMs": %.3f, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
      summary.requests, summary.duration / 1e6, ms(50), ms(99), ms(99.9), latency.max / 1000,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
