-- wrk script of bench/chat/run.sh: one chat API request, repeated, and a
-- JSON summary with the latency distribution (for the report and the CDF).
--
-- Environment:
--   BENCH_METHOD   POST (default): POST /api/messages {"chat_id","text"}
--                  GET: GET /api/messages?chat_id=BENCH_CHAT
--   BENCH_SESSION  Session-Id header           BENCH_CHAT  chat id
--   BENCH_COUNT    stop after this many responses (0: run for wrk's -d).
--                  Exact with one thread and one connection (-t1 -c1).
--   BENCH_OUT      where done() writes its JSON

local method = os.getenv("BENCH_METHOD") or "POST"
local session = assert(os.getenv("BENCH_SESSION"), "BENCH_SESSION is required")
local chat = assert(tonumber(os.getenv("BENCH_CHAT")), "BENCH_CHAT is required")
local limit = tonumber(os.getenv("BENCH_COUNT") or "0")
local out = assert(os.getenv("BENCH_OUT"), "BENCH_OUT is required")

wrk.headers["Session-Id"] = session
if method == "POST" then
    wrk.method = "POST"
    wrk.path = "/api/messages"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = string.format('{"chat_id":%d,"text":"hello from bench/chat"}', chat)
else
    wrk.method = "GET"
    wrk.path = string.format("/api/messages?chat_id=%d", chat)
end

-- Defined only when counting: a response() hook makes wrk parse every
-- response for Lua, which costs the load generator CPU. Stopping the thread
-- is not enough: wrk's main thread sleeps for the whole -d and only a SIGINT
-- (which wrk handles as "stop now and report") cuts that short. The shell
-- that os.execute starts is wrk's child, so $PPID is wrk. The kill runs in
-- the background, 10 ms later: os.execute is system(), which ignores SIGINT
-- in wrk until the shell has exited. Those 10 ms (and the fork) count in
-- the run's duration: under 0.2% of a 10,000-request run.
if limit > 0 then
    local seen = 0
    function response(status, headers, body)
        seen = seen + 1
        if seen == limit then
            wrk.thread:stop()
            os.execute("(sleep 0.01; kill -INT $PPID) &")
        end
    end
end

-- Percentiles written out: 1..99 in steps of 1, then the tail.
local points = {}
for p = 1, 99 do points[#points + 1] = p end
for _, p in ipairs({ 99.5, 99.9, 99.99 }) do points[#points + 1] = p end

function done(summary, latency, requests)
    local e = summary.errors
    local cdf = {}
    for _, p in ipairs(points) do
        cdf[#cdf + 1] = string.format("[%g,%d]", p, latency:percentile(p))
    end
    local f = assert(io.open(out, "w"))
    f:write(string.format(
        '{"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
            .. '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"percentiles":[%s]}}\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
        latency.min, latency.mean, latency.max, latency.stdev, table.concat(cdf, ",")))
    f:close()
end
