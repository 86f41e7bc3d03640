#!/usr/bin/env python3
"""lab/bench/profiles/classify.py PROFILE [US_PER_OP] [-v]: a CPU profile's
samples (go tool pprof -traces) by component, as % and, given the
process's CPU µs per operation, µs per operation. GC decides wherever it
appears in a stack; else the innermost frame that names a component; the
scheduler and timers only for samples outside every component. -v lists
what fell in "other"."""
import subprocess, sys, re, collections
prof = sys.argv[1]
usop = float(sys.argv[2]) if len(sys.argv) > 2 else None
out = subprocess.run(["go", "tool", "pprof", "-traces", prof], capture_output=True, text=True).stdout
blocks = out.split("-----------+-------------------------------------------------------")
def dur(s):
    m = re.match(r"\s*([\d.]+)(ms|s|us|µs)", s)
    v = float(m.group(1)); u = m.group(2)
    return v * {"s": 1e3, "ms": 1, "us": 1e-3, "µs": 1e-3}[u]
RULES = [
    ("GC (mark workers, assists, sweep)", r"gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge|gcStart|runtime\.GC\b|markroot"),
    ("span export (batch processor, OTLP)", r"batchSpanProcessor|OTLPExporter|otlptrace"),
    ("log buffer writer goroutine", r"telemetry\.\(\*logBuffer\)\.(run|flush|loop|write)|logBuffer\)\.writer"),
    ("AMQP reader goroutine (frames in, confirms out)", r"amqp091-go\.\(\*Connection\)\.(reader|demux|dispatch)|amqp091-go\.\(\*Channel\)\.(recv|dispatch)|amqp091-go\.\(\*confirms\)\.(One|Multiple|confirm|resequence)"),
    ("AMQP heartbeater/other library goroutines", r"amqp091-go\.\(\*Connection\)\.heartbeater"),
    ("message build + sign", r"rabbitmq\.Message\b|msgsig|kv\.EncodeMessage"),
    ("producer span + trace inject", r"rabbitmq\.\(\*Publisher\)\.startPublish|rabbitmq\.endSpan"),
    ("publish: frames written (amqp091 + write(2))", r"PublishWithDeferredConfirm"),
    ("publish: pool, confirm wait, timeout ctx", r"rabbitmq\.\(\*Publisher\)\.(publish|Publish)|rabbitmq\.\(\*session\)|kv\.\(\*Service\)\.publish|measuredPublisher|clockGuard"),
    ("version stamp (uuid, clock)", r"kv\.NewVersion|uuid\.New"),
    ("body read + decode + validation", r"parseWrite|readBody|decodeWrite|ValidateOp|ValidateKey|queryOf|countingBody"),
    ("response: JSON, version token, headers", r"writeWrite|writeJSON|\(\*api\)\.version|token\.\(\*Codec\)"),
    ("auth + rate limit", r"\(\*api\)\.authenticate|\(\*api\)\.limitClient|auth\.\(\*Authenticator\)|authorize"),
    ("access log line (zerolog)", r"\(\*api\)\.accessLog|zerolog"),
    ("metrics (Prometheus)", r"\(\*api\)\.measure|prometheus|internal/metrics"),
    ("server span (SDK start/end) + traceparent", r"\(\*api\)\.traced|\(\*exchange\)\.endSpan|otel/sdk/trace|propagation"),
    ("request id, exchange wrapper, recover", r"requestID|\(\*exchange\)|recoverPanic"),
    ("chi routing", r"go-chi/chi"),
    ("HTTP server: read request, write response, conn (net/http, syscalls)", r"net/http\.(?!HandlerFunc)|net/textproto"),
    ("reference handler (stub)", r"bench\.amqpStub|bench\.\(\*confirmPool\)|bench\.redisStub|bench\.ServeStub"),
    ("scheduler: find work, park, wake (futex, epoll)", r"runtime\.(schedule|findRunnable|mcall|park_m|stopm|startm|wakep|netpoll|goexit0|notesleep|futexsleep|futexwakeup|gopreempt|goschedImpl|exitsyscall|entersyscall|mstart|sysmon|ready|injectglist)|epollwait|EpollWait"),
    ("timers", r"runtime\.(runtimer|checkTimers|timer|\(\*timers\))|time\.Sleep"),
]
agg = collections.Counter(); total = 0.0; unk = collections.Counter()
GCRX = RULES[0][1]
RUNTIME = [r for r in RULES if r[0].startswith(("scheduler", "timers"))]
USER = [r for r in RULES[1:] if r not in RUNTIME]
for b in blocks[1:]:
    lines = [l for l in b.strip("\n").split("\n") if l.strip()]
    if not lines: continue
    v = dur(lines[0])
    frames = [re.sub(r"^\s*[\d.]+(ms|s|us|µs)\s+", "", lines[0]).strip()] + [l.strip() for l in lines[1:]]
    total += v
    name = None
    if any(re.search(GCRX, f) for f in frames):
        name = RULES[0][0]
    for f in frames:  # leaf to root: the innermost component's work
        if name: break
        for n, rx in USER:
            if re.search(rx, f):
                name = n; break
    if not name:
        for f in frames:
            for n, rx in RUNTIME:
                if re.search(rx, f):
                    name = n; break
            if name: break
    if not name:
        name = "other"; unk[frames[-1] + " <- " + frames[0]] += v
    agg[name] += v
print(f"{prof}: {total:.0f} ms of samples" + (f", {usop} µs/op" if usop else ""))
for name, v in agg.most_common():
    print(f"  {100*v/total:5.1f} %" + (f"  {usop*v/total:6.1f} µs" if usop else "") + f"  {name}")
if "-v" in sys.argv:
    for k, v in unk.most_common(15): print("   other:", round(v), k)
