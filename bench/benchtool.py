#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

Subcommands:
  freeport [N]                      print N free TCP ports on 127.0.0.1
  pidtree PID                       print PID and all its descendants
  cputicks PID...                   sum of utime+stime (clock ticks) of the PIDs
  rss PID...                        sum of VmRSS (KiB) of the PIDs
  cpustat                           busy clock ticks of the whole machine
  timed OUTFILE CMD...              run CMD, print its CPU time in clock ticks
  wait-port PORT TIMEOUT [PID]      wait until 127.0.0.1:PORT listens (held by PID)
  seq PORT N [PATHS]                N sequential GETs over one keep-alive connection
                                    (PATHS > 1: cycle over the paths /p/0 .. /p/PATHS-1)
  origin-requests PORT...           requests served so far by each origin (stub_status)
  idle PORT CONNS PID...            RSS growth of PIDs per idle keep-alive connection
  flood KIND PORT REQ_PORT CONNS HOLD BASELINE PID...
                                    hold CONNS connections (partial | h1 | h2): RSS per
                                    connection, proxy CPU and a paced client's latency
  big-flood PORT CONNS AFTER PID... RSS before, during CONNS connections and each
                                    second for AFTER s after they closed
  metric ADMIN_PORT FAMILY          sum of a Prometheus family's samples
  wrk FILE                          parse `wrk --latency` output
  latency FILE                      parse bench/loadgen's output (its last line, JSON)
  callgrind FILE                    total Ir of a callgrind dump
  strace FILE                       total syscalls of an `strace -c` summary
  dhat FILE                         total blocks/bytes from a DHAT log
  report RESULTS.jsonl INFO         print the Markdown report (INFO: key=value lines)
  balance-report RESULTS.jsonl INFO print the MODE=balance report (one row per algorithm)
  floods-report RESULTS.jsonl INFO  print the MODE=floods report

Every request that the helpers send goes to 127.0.0.1 only.
"""

import asyncio
import json
import os
import re
import resource
import socket
import statistics
import sys
import time

HOST = "127.0.0.1"
BODY_LEN = 1024


def die(msg):
    print(f"benchtool: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- processes

def freeport(n=1):
    """Free ports below the kernel's ephemeral range when there is room, so
    that no other program's bind(0) or connect() can take them between this
    choice and the bind of the server we start (other test suites on the
    machine do bind port 0)."""
    import random
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    ports = []
    if low > 11000:
        candidates = random.sample(range(10000, low), min(2000, low - 10000))
        for port in candidates:
            if len(ports) == int(n):
                break
            s = socket.socket()
            try:
                s.bind((HOST, port))
                ports.append(port)
            except OSError:
                pass
            finally:
                s.close()
    socks = []
    while len(ports) < int(n):  # fallback: let the kernel choose
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm (field 2) may hold spaces or parentheses: split after the last ')'.
    return data[data.rindex(")") + 2:].split()


def pidtree(pid):
    print(" ".join(map(str, sorted(_tree(int(pid))))))


def cputicks(*pids):
    total = 0
    for pid in pids:
        f = _stat_fields(pid)
        # fields 14 (utime) and 15 (stime); f[0] is field 3.
        total += int(f[11]) + int(f[12])
    print(total)


def cpustat():
    """Busy clock ticks of the whole machine so far (all cores)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is inside user)
    print(v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0))


def timed(outfile, *cmd):
    """Run cmd with stdout+stderr to outfile; print its CPU time in clock
    ticks (utime+stime of it and its children); exit with its status."""
    import subprocess
    with open(outfile, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    hz = os.sysconf("SC_CLK_TCK")
    print(round((ru.ru_utime + ru.ru_stime) * hz))
    sys.exit(proc.returncode if proc.returncode >= 0 else 1)


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def _listen_inodes(port):
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def _tree(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat_fields(entry)[1]), []).append(int(entry))
            except (OSError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _owns_listener(pid, port):
    inodes = _listen_inodes(port)
    if not inodes:
        return False
    for p in _tree(pid):
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                link = os.readlink(f"/proc/{p}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
        except OSError:
            pass
    return False


def wait_port(port, timeout, pid=None):
    """Wait until 127.0.0.1:PORT listens. With PID: until PID (or one of its
    descendants) holds that listening socket; fail at once if PID is gone."""
    port = int(port)
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        if pid is not None:
            try:
                gone = _stat_fields(pid)[0] == "Z"
            except OSError:
                gone = True
            if gone:
                die(f"process {pid} exited before listening on port {port}")
            if _owns_listener(int(pid), port):
                return
        else:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                return
            except OSError:
                pass
        time.sleep(0.1)
    die(f"nothing of ours listens on {HOST}:{port} after {timeout}s")


# ---------------------------------------------------------------- clients

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: strait-bench\r\n\r\n"


def _read_response(sock, buf):
    """Read one response from sock; buf holds bytes already read. Returns
    (status, body_len, rest_of_buffer)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before response headers")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    clen, chunked = None, False
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            clen = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed inside a chunk")
                buf += chunk
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                break
        return status, len(body), buf
    if clen is None:
        raise ValueError("response without Content-Length or chunked body")
    while len(buf) < clen:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside the body")
        buf += chunk
    return status, clen, buf[clen:]


def _request(path, extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"User-Agent: strait-bench\r\n{extra}\r\n").encode()


def _extra_headers():
    """MODE=policies: BENCH_HEADERS holds header lines ("Name: value",
    one per line) every request carries (credentials, Origin,
    Accept-Encoding)."""
    lines = [l.strip() for l in os.environ.get("BENCH_HEADERS", "").splitlines() if l.strip()]
    return "".join(f"{l}\r\n" for l in lines)


def seq(port, n, paths=1, timeout=120):
    """Exactly n GETs, one after the other, over one keep-alive connection.
    Every response must be a 200 with a 1024-byte body. If the server closes
    the connection between two requests, reconnect and warn (the count stays
    exact). With paths > 1 the requests cycle over /p/0 .. /p/(paths-1) (the
    same paths as the wrk script of MODE=balance), so that hash balancers see
    different keys; with 1 every request is GET /."""
    n = int(n)
    paths = int(paths)
    extra = _extra_headers()
    if paths <= 1:
        requests = [REQUEST] if not extra else [_request("/", extra)]
    else:
        requests = [_request(f"/p/{k}", extra) for k in range(paths)]
    # MODE=policies, compress: the body is compressed, so any length goes
    any_body = os.environ.get("BENCH_ANY_BODY") == "1"

    def connect():
        s = socket.create_connection((HOST, int(port)), timeout=float(timeout))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    sock, buf, reconnects, i = connect(), b"", 0, 0
    t0 = time.monotonic()
    while i < n:
        try:
            sock.sendall(requests[i % len(requests)])
            status, blen, buf = _read_response(sock, buf)
        except ConnectionError as e:
            # closed before any byte of this response: the server ended the
            # keep-alive connection; anything else is an error
            if buf or "before response headers" not in str(e) or reconnects > n:
                die(f"request {i + 1}/{n} to port {port} failed: {e}")
            sock.close()
            sock, buf = connect(), b""
            reconnects += 1
            continue
        except (OSError, ValueError) as e:
            die(f"request {i + 1}/{n} to port {port} failed: {e}")
        if status != 200 or (blen != BODY_LEN and not any_body):
            die(f"request {i + 1}/{n} to port {port}: status {status}, body {blen} bytes")
        i += 1
    sock.close()
    if reconnects:
        print(f"benchtool: WARNING: port {port} closed the keep-alive connection "
              f"{reconnects} times during {n} requests", file=sys.stderr)
    if os.environ.get("BENCH_VERBOSE"):
        print(f"{n} requests in {time.monotonic() - t0:.2f}s", file=sys.stderr)


ORIGIN_STATUS_PATH = "/__bench/status"


def origin_requests(*ports):
    """Requests each origin has handled so far, from its nginx stub_status
    page (MODE=balance adds that location to the origins). The status request
    itself is counted too: one per call, the same for every origin."""
    counts = []
    for port in ports:
        with socket.create_connection((HOST, int(port)), timeout=10) as s:
            s.sendall(f"GET {ORIGIN_STATUS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Connection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        m = re.search(rb"accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)", data)
        if not m:
            die(f"no stub_status page on origin port {port}: {data[:200]!r}")
        counts.append(int(m.group(3)))
    print(" ".join(map(str, counts)))


async def _idle(port, conns, pids, parallel=200, settle=2.0):
    pids = [int(p) for p in pids]
    before = rss_kib(pids)
    sem = asyncio.Semaphore(parallel)
    streams, failures = [], []

    async def one():
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), 30)
                w.write(REQUEST)
                await w.drain()
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if not head.startswith(b"HTTP/1.1 200") or not m:
                    raise ValueError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                await asyncio.wait_for(r.readexactly(int(m.group(1))), 30)
                streams.append((r, w))
            except Exception as e:  # noqa: BLE001 - report, don't crash
                failures.append(repr(e))

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(conns)))
    opened = time.monotonic() - t0
    await asyncio.sleep(settle)
    after = rss_kib(pids)
    # A connection the server closed meanwhile has seen EOF.
    alive = sum(1 for r, _ in streams if not r.at_eof())
    for _, w in streams:
        w.close()
    for _, w in streams:
        try:
            await w.wait_closed()
        except Exception:  # noqa: BLE001
            pass
    return {
        "conns": conns,
        "opened": len(streams),
        "alive": alive,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "open_seconds": round(opened, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_conn": (after - before) / len(streams) if streams else None,
    }


def idle(port, conns, *pids):
    conns = int(conns)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, conns + 1024) if hard != resource.RLIM_INFINITY else conns + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < conns + 16:
        die(f"open-file limit {hard} too low for {conns} connections")
    r = asyncio.run(_idle(int(port), conns, pids))
    print(json.dumps(r), file=sys.stderr)
    # one line for bash: kib_per_conn opened alive failures rss_before rss_after
    print(r["kib_per_conn"] if r["kib_per_conn"] is not None else "nan", r["opened"],
          r["alive"], r["failures"], r["rss_before_kib"], r["rss_after_kib"])


# ---------------------------------------------------------------- floods
# MODE=floods: many connections held open against a proxy while its CPU time
# and RSS are read from /proc, and a paced client measures latency.

AFTER_CLOSE_S = 2.0  # how long the proxy's CPU is read after a flood closed
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"      # empty SETTINGS
H2_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def _ticks(pids):
    total = 0
    for pid in pids:
        f = _stat_fields(pid)
        total += int(f[11]) + int(f[12])
    return total


def _raise_nofile(conns):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = conns + 1024 if hard == resource.RLIM_INFINITY else min(hard, conns + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < conns + 64:
        die(f"open-file limit {hard} too low for {conns} connections")


async def _open_one(kind, port, timeout=30):
    """One flood connection: 'partial' sends the byte P; 'h1' one request and
    its whole response; 'h2' the HTTP/2 preface and an empty SETTINGS, reads
    the server's SETTINGS and acknowledges it. Returns (reader, writer)."""
    r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    try:
        if kind == "partial":
            w.write(b"P")
            await w.drain()
        elif kind == "h1":
            w.write(REQUEST)
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if not head.startswith(b"HTTP/1.1 200") or not m:
                raise ValueError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            await asyncio.wait_for(r.readexactly(int(m.group(1))), timeout)
        elif kind == "h2":
            w.write(H2_PREFACE + H2_SETTINGS)
            await w.drain()
            frame = await asyncio.wait_for(r.readexactly(9), timeout)
            length, ftype = int.from_bytes(frame[:3], "big"), frame[3]
            if ftype != 4:
                raise ValueError(f"first HTTP/2 frame is of type {ftype}, not SETTINGS")
            await asyncio.wait_for(r.readexactly(length), timeout)
            w.write(H2_SETTINGS_ACK)
            await w.drain()
        else:
            raise ValueError(f"unknown flood kind {kind}")
    except BaseException:
        w.close()
        raise
    return r, w


async def _watch(r, closed):
    """Read (and drop) whatever the server sends until it closes the
    connection; then count it in `closed`."""
    try:
        while await r.read(65536):
            pass
    except (OSError, asyncio.IncompleteReadError):
        pass
    except asyncio.CancelledError:
        return
    closed.append(1)


async def _open_many(kind, port, conns, parallel=200):
    """CONNS connections of KIND, PARALLEL at a time. Returns (streams,
    failures, seconds, closed): each stream has a task that reads until the
    server closes it and then appends to `closed`."""
    sem = asyncio.Semaphore(parallel)
    streams, failures, closed = [], [], []

    async def one():
        async with sem:
            try:
                r, w = await _open_one(kind, port)
            except Exception as e:  # noqa: BLE001 - counted and reported
                failures.append(repr(e))
                return
            streams.append((w, asyncio.ensure_future(_watch(r, closed))))

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(conns)))
    return streams, failures, time.monotonic() - t0, closed


async def _close_all(streams, abort=False):
    for w, task in streams:
        task.cancel()
        if abort:
            w.transport.abort()  # RST: frees the client's port, no TIME_WAIT
        else:
            w.close()
    for w, task in streams:
        try:
            await asyncio.wait_for(w.wait_closed(), 5)
        except Exception:  # noqa: BLE001
            pass
    await asyncio.gather(*(task for _, task in streams), return_exceptions=True)


async def _paced(port, seconds, interval=0.01):
    """Sequential GETs over one keep-alive connection, one every `interval`
    (10 ms), for `seconds`; returns the latencies in ms. Bounded in time and
    in count."""
    r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    lat = []
    start = time.monotonic()
    end = start + seconds
    k = 0
    try:
        while time.monotonic() < end and k < int(seconds / interval) + 1:
            t0 = time.perf_counter()
            w.write(REQUEST)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if not head.startswith(b"HTTP/1.1 200") or not m:
                raise ValueError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            await asyncio.wait_for(r.readexactly(int(m.group(1))), 10)
            lat.append((time.perf_counter() - t0) * 1000)
            k += 1
            await asyncio.sleep(max(0.0, start + k * interval - time.monotonic()))
    finally:
        w.close()
    return lat


async def _window(port, pids, seconds):
    """Proxy CPU (% of a core) over `seconds` while the paced client runs,
    and that client's latencies."""
    hz = os.sysconf("SC_CLK_TCK")
    t0, s0 = _ticks(pids), time.monotonic()
    lat = await _paced(port, seconds)
    t1, s1 = _ticks(pids), time.monotonic()
    return {
        "cpu_pct": (t1 - t0) * 100 / hz / (s1 - s0),
        "cpu_ticks": t1 - t0,
        "requests": len(lat),
        "p50_ms": statistics.median(lat) if lat else None,
        "p99_ms": sorted(lat)[int(len(lat) * 0.99)] if lat else None,
    }


async def _flood(kind, port, req_port, conns, hold, baseline, pids):
    out = {"kind": kind, "conns": conns, "hold_s": hold}
    if baseline:
        out["baseline"] = await _window(req_port, pids, hold)
        out["baseline"]["rss_kib"] = rss_kib(pids)
    before = rss_kib(pids)
    streams, failures, opened, closed = await _open_many(kind, port, conns)
    await asyncio.sleep(1.0)  # let the proxy settle (and read what was sent)
    during = rss_kib(pids)
    win = await _window(req_port, pids, hold)
    alive = len(streams) - len(closed)
    out.update({
        "opened": len(streams), "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "open_seconds": round(opened, 2), "alive": alive,
        "rss_before_kib": before, "rss_during_kib": during,
        "kib_per_conn": (during - before) / len(streams) if streams else None,
        "window": win,
    })
    # what the proxy does once the clients are gone (each closes with a FIN)
    await _close_all(streams)
    hz = os.sysconf("SC_CLK_TCK")
    t0, s0 = _ticks(pids), time.monotonic()
    await asyncio.sleep(AFTER_CLOSE_S)
    out["after_close_cpu_pct"] = (_ticks(pids) - t0) * 100 / hz / (time.monotonic() - s0)
    return out


def flood(kind, port, req_port, conns, hold, baseline, *pids):
    """flood KIND PORT REQ_PORT CONNS HOLD BASELINE PID...: hold CONNS
    connections of KIND (partial | h1 | h2) to PORT; measure the proxy's RSS
    growth per connection, then its CPU over HOLD seconds while a paced
    client sends GETs to REQ_PORT (BASELINE=1: first one such window without
    the flood), and its CPU for 2 s after the clients closed. JSON on stderr;
    one line for bash on stdout."""
    conns = int(conns)
    _raise_nofile(conns)
    r = asyncio.run(_flood(kind, int(port), int(req_port), conns, float(hold),
                           baseline == "1", [int(p) for p in pids]))
    print(json.dumps(r), file=sys.stderr)
    b = r.get("baseline") or {}
    w = r["window"]
    # kib_per_conn opened alive failures cpu_pct p50_ms base_cpu base_p50 base_rss
    # rss_during after_close_cpu_pct
    fmt = lambda x, f: "nan" if x is None else f.format(x)  # noqa: E731
    print(fmt(r["kib_per_conn"], "{:.2f}"), r["opened"], r["alive"], r["failures"],
          fmt(w["cpu_pct"], "{:.2f}"), fmt(w["p50_ms"], "{:.3f}"),
          fmt(b.get("cpu_pct"), "{:.2f}"), fmt(b.get("p50_ms"), "{:.3f}"),
          fmt(b.get("rss_kib"), "{}"), r["rss_during_kib"],
          fmt(r["after_close_cpu_pct"], "{:.2f}"))


async def _big(port, conns, after, pids):
    before = rss_kib(pids)
    streams, failures, opened, closed = await _open_many("h1", port, conns)
    await asyncio.sleep(2.0)
    during = rss_kib(pids)
    alive = len(streams) - len(closed)
    t0 = time.monotonic()
    await _close_all(streams, abort=True)
    close_seconds = time.monotonic() - t0
    streams = None
    series = []  # (seconds since every client closed, RSS KiB)
    t_closed = time.monotonic()
    for k in range(1, int(after) + 1):
        await asyncio.sleep(max(0.0, t_closed + k - time.monotonic()))
        series.append((round(time.monotonic() - t_closed, 2), rss_kib(pids)))
    return {
        "conns": conns, "opened": conns - len(failures), "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "open_seconds": round(opened, 2), "close_seconds": round(close_seconds, 2),
        "alive": alive, "rss_before_kib": before, "rss_during_kib": during,
        "rss_after_kib": series,
    }


def big_flood(port, conns, after, *pids):
    """big-flood PORT CONNS AFTER PID...: RSS before, during CONNS idle
    keep-alive connections (one request each), and each second for AFTER
    seconds after every client closed (with RST, so that 20,000 client ports
    do not sit in TIME_WAIT). JSON on stderr; one line for bash on stdout."""
    conns = int(conns)
    _raise_nofile(conns)
    r = asyncio.run(_big(int(port), conns, int(after), [int(p) for p in pids]))
    print(json.dumps(r), file=sys.stderr)
    # sample k was taken k seconds after the close
    series = [v for _, v in r["rss_after_kib"]]
    last = series[-1] if series else "nan"
    at = lambda s: series[s - 1] if s <= len(series) else "nan"  # noqa: E731
    # opened alive failures before during after10 after30 after60 last
    print(r["opened"], r["alive"], r["failures"], r["rss_before_kib"], r["rss_during_kib"],
          at(10), at(30), at(60), last)


def metric(port, family):
    """metric ADMIN_PORT FAMILY: the sum of every sample of a Prometheus
    family on 127.0.0.1:ADMIN_PORT/metrics (0 if it has none)."""
    with socket.create_connection((HOST, int(port)), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        status = head.split(b"\r\n", 1)[0]
        die(f"admin port {port}: {status!r}")
    total = 0.0
    for line in body.decode(errors="replace").splitlines():
        m = re.match(rf"^{re.escape(family)}(?:\{{[^}}]*\}})?\s+(\S+)", line)
        if m:
            total += float(m.group(1))
    print(f"{total:g}")


# ---------------------------------------------------------------- parsers

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _dur_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"bad duration {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def wrk(path):
    text = open(path).read()
    out = {}
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        if not m:
            die(f"{path}: no {pct}% latency line (was --latency given?)")
        out[key] = round(_dur_ms(m.group(1)), 4)
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+),", text, re.M)
    if not m:
        die(f"{path}: no 'N requests in' line")
    out["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    out["rps"] = float(m.group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    out["errors"] = errors
    # one line for bash: rps p50_ms p99_ms requests errors
    print(out["rps"], out["p50_ms"], out["p99_ms"], out["requests"], out["errors"])


def latency(path):
    """bench/loadgen's last line (JSON) -> one line for bash: achieved_rate
    p50 p90 p99 p99.9 max (µs) errors+unsent lag_p99 (µs)."""
    lines = [line for line in open(path).read().splitlines() if line.startswith("{")]
    if not lines:
        die(f"{path}: no JSON line from the load generator")
    r = json.loads(lines[-1])
    if r["ok"] == 0:
        die(f"{path}: no successful request")
    print(r["achieved_rate"], r["p50_us"], r["p90_us"], r["p99_us"], r["p999_us"], r["max_us"],
          r["errors"] + r["unsent"], r["lag_p99_us"])


def h2load(path):
    """h2load's summary -> one line for bash: rps requests errors."""
    text = open(path).read()
    m = re.search(r"^finished in [\d.]+\w+, ([\d.]+) req/s", text, re.M)
    if not m:
        die(f"{path}: no 'finished in ... req/s' line")
    rps = float(m.group(1))
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    if not m:
        die(f"{path}: no 'requests:' line")
    done, failed, errored, timeout = (int(m.group(i)) for i in (3, 5, 6, 7))
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    bad = int(m.group(3)) + int(m.group(4)) if m else 0
    print(rps, done, failed + errored + timeout + bad)


def callgrind(path):
    total = None
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                total = int(line.split()[1])
            elif line.startswith("summary:") and total is None:
                total = int(line.split()[1])
    if total is None:
        die(f"{path}: no totals:/summary: line")
    print(total)


def strace(path):
    for line in open(path):
        f = line.split()
        if f and f[-1] == "total":
            # % time, seconds, usecs/call, calls, [errors], total
            print(int(f[3]))
            return
    die(f"{path}: no 'total' line")


def dhat(path):
    text = open(path).read()
    m = re.search(r"Total:\s+([\d,]+) bytes in ([\d,]+) blocks", text)
    if not m:
        die(f"{path}: no 'Total: ... bytes in ... blocks' line")
    # one line for bash: blocks bytes
    print(int(m.group(2).replace(",", "")), int(m.group(1).replace(",", "")))


# ---------------------------------------------------------------- report

# (key, label, format); lower is better unless the label says otherwise
METRICS = [
    ("rps", "Requests/s (higher is better)", "{:,.0f}"),
    ("p50_ms", "Latency p50 (ms)", "{:.3f}"),
    ("p99_ms", "Latency p99 (ms)", "{:.3f}"),
    ("cpu_us", "CPU time per request (µs)", "{:.2f}"),
    ("cpu_busy", "Proxy CPU busy under load (% of a core)", "{:.0f}"),
    ("errors", "wrk errors, all rounds (socket + non-2xx)", "{:.0f}"),
    ("foreign", "Other CPU use during load (% of a core; <~10 is accounting noise)", "{:.0f}"),
    # the latency phase; {rate} is filled in from the run's settings
    ("lat_p50_us", "p50 at {rate} req/s (µs)", "{:,.1f}"),
    ("lat_p90_us", "p90 at {rate} req/s (µs)", "{:,.1f}"),
    ("lat_p99_us", "p99 at {rate} req/s (µs)", "{:,.1f}"),
    ("lat_p999_us", "p99.9 at {rate} req/s (µs)", "{:,.1f}"),
    ("lat_max_us", "max at {rate} req/s (µs; one slow request)", "{:,.1f}"),
    ("lat_rate", "Achieved rate of the {rate} req/s runs (req/s)", "{:,.0f}"),
    ("lat_cpu_busy", "Proxy CPU busy at {rate} req/s (% of a core)", "{:.1f}"),
    ("lat_errors", "Latency-run errors, all rounds (socket, status, length, unsent)", "{:.0f}"),
    ("lat_lag_p99_us", "Load generator's own wake-up lag p99 (µs; its timing error)", "{:.1f}"),
    ("lat_foreign", "Other CPU use during the latency runs (% of a core)", "{:.0f}"),
    ("ir", "Instructions per request (callgrind Ir)", "{:,.0f}"),
    ("syscalls", "Syscalls per request (strace)", "{:.2f}"),
    ("allocs", "Heap allocations per request (DHAT blocks)", "{:.2f}"),
    ("alloc_bytes", "Heap bytes allocated per request (DHAT)", "{:,.0f}"),
    ("idle_kib", "RSS per idle keep-alive connection (KiB)", "{:.2f}"),
    ("rss_start", "RSS after start-up (KiB)", "{:,.0f}"),
]

# rows about the measurement itself, where strait ÷ nginx means nothing
NO_RATIO = {"lat_lag_p99_us"}


def _read_info(path):
    """key=value lines; 'note' may repeat."""
    info = {"notes": []}
    for line in open(path):
        line = line.rstrip("\n")
        if "=" not in line:
            continue
        k, v = line.split("=", 1)
        if k == "note":
            info["notes"].append(v)
        elif k == "skip":
            info.setdefault("skips", []).append(v)
        else:
            info[k] = v
    return info


def report(results_path, info_path):
    info = _read_info(info_path)
    values = {}
    for line in open(results_path):
        line = line.strip()
        if line:
            r = json.loads(line)
            values.setdefault((r["proxy"], r["metric"]), []).append(r["value"])

    def agg(proxy, key):
        v = values.get((proxy, key))
        if not v:
            return None
        if key.endswith("errors"):
            return sum(v)
        return statistics.median(v)

    rows = []
    rate = f"{int(info['rate']):,}" if info.get("rate") else "?"
    for key, label, fmt in METRICS:
        label = label.replace("{rate}", rate)
        s, n = agg("strait", key), agg("nginx", key)
        if s is None and n is None:
            continue
        cell = lambda x: "n/a" if x is None else fmt.format(x)  # noqa: E731
        if key in NO_RATIO:
            ratio = "—"
        elif s is not None and n not in (None, 0):
            ratio = f"{s / n:.2f}"
        elif s is not None and n == 0 and s == 0:
            ratio = "—"
        else:
            ratio = "n/a"
        rows.append(f"| {label} | {cell(s)} | {cell(n)} | {ratio} |")

    out = []
    out.append("# Strait vs nginx — reverse-proxy benchmark")
    out.append("")
    out.append(f"Run: {info['date']}  ")
    out.append(f"Machine: {info['nproc']} cores, {info['cpu']}, Linux {info['kernel']}  ")
    out.append(f"Strait: {info['strait_version']} (git {info['git']})  ")
    out.append(f"nginx: {info['nginx_version']}; wrk: {info['wrk_version']}; "
               f"valgrind: {info['valgrind_version']}; strace: {info['strace_version']}  ")
    out.append(f"Settings: ROUNDS={info['rounds']} DURATION={info['duration']} "
               f"CONNS={info['conns']} N={info['n']} IDLE_CONNS={info['idle_conns']}; "
               f"proxy on CPU {info['proxy_cpu']}, wrk + origin on CPU {info['load_cpu']}; "
               f"load average before the run: {info.get('loadavg', '?')}")
    if info.get("rate"):
        out.append(f"Latency phase: RATE={info['rate']} LAT_DURATION={info.get('lat_duration')} "
                   f"LAT_CONNS={info.get('lat_conns')} (open loop, bench/loadgen; latency "
                   "from each request's scheduled send time)  ")
    if info.get("phases", "").split() != ["load", "latency", "strace", "idle", "callgrind", "dhat"]:
        out.append("")
        out.append(f"Partial run: PHASES={info.get('phases')}")
    out.append("")
    out.append("| metric | strait | nginx | ratio (strait/nginx) |")
    out.append("| --- | ---: | ---: | ---: |")
    out.extend(rows)
    out.append("")
    out.append("Load-test and latency rows are medians over the rounds (errors: the sum). "
               "Every ratio is strait ÷ nginx: below 1 is better for strait in every row but "
               "requests/s and the achieved rate.")
    if info.get("origin_rps"):
        out.append("")
        out.append(f"Origin alone (wrk straight to the origin, same settings, one run): "
                   f"{float(info['origin_rps']):,.0f} requests/s.")
    o = {k: agg("origin", k) for k in ("lat_p50_us", "lat_p99_us", "lat_p999_us")}
    if all(v is not None for v in o.values()):
        out.append("")
        out.append(f"Origin alone at {rate} req/s (the generator straight to the origin, one "
                   f"run): p50 {o['lat_p50_us']:,.1f} µs, p99 {o['lat_p99_us']:,.1f} µs, "
                   f"p99.9 {o['lat_p999_us']:,.1f} µs.")
    for note in info.get("notes", []):
        out.append("")
        out.append(f"Note: {note}")
    print("\n".join(out))


def balance_report(results_path, info_path):
    """MODE=balance: one row per algorithm (strait-ALGO) plus nginx."""
    info = _read_info(info_path)
    values = {}
    for line in open(results_path):
        line = line.strip()
        if line:
            r = json.loads(line)
            values.setdefault((r["proxy"], r["metric"]), []).append(r["value"])

    def agg(proxy, key):
        v = values.get((proxy, key))
        if not v:
            return None
        return sum(v) if key == "errors" else statistics.median(v)

    skipped = {}
    for line in info.get("skips", []):
        algo, _, err = line.partition("\t")
        skipped[algo] = err
    origins = int(info.get("origins", "0") or 0)
    base = agg("strait-round_robin", "ir")

    def fmt(x, f):
        return "n/a" if x is None else f.format(x)

    def row(label, proxy):
        rps, cpu, busy = agg(proxy, "rps"), agg(proxy, "cpu_us"), agg(proxy, "cpu_busy")
        ir, errs = agg(proxy, "ir"), agg(proxy, "errors")
        ratio = f"{ir / base:.3f}" if ir is not None and base else "n/a"
        diff = f"{ir - base:+,.0f}" if ir is not None and base is not None else "n/a"
        shares = [agg(proxy, f"share_{k}") for k in range(1, origins + 1)]
        split = "/".join("?" if x is None else f"{x:.0f}" for x in shares) \
            if any(x is not None for x in shares) else "n/a"
        return (f"| {label} | {fmt(rps, '{:,.0f}')} | {fmt(cpu, '{:.2f}')} | "
                f"{fmt(busy, '{:.0f}')} | {fmt(ir, '{:,.0f}')} | {ratio} | {diff} | "
                f"{split} | {fmt(errs, '{:.0f}')} |")

    out = []
    out.append("# Strait load balancers — per-request cost over "
               f"{origins} origins")
    out.append("")
    out.append(f"Run: {info['date']}  ")
    out.append(f"Machine: {info['nproc']} cores, {info['cpu']}, Linux {info['kernel']}  ")
    out.append(f"Strait: {info['strait_version']} (git {info['git']})  ")
    out.append(f"nginx: {info['nginx_version']}; wrk: {info['wrk_version']}; "
               f"valgrind: {info['valgrind_version']}  ")
    out.append(f"Settings: MODE=balance ORIGINS={origins} BALANCE_PATHS={info.get('paths')} "
               f"ROUNDS={info['rounds']} DURATION={info['duration']} CONNS={info['conns']} "
               f"N={info['n']} PHASES=\"{info.get('phases')}\"; "
               f"proxy on CPU {info['proxy_cpu']}, wrk + origins on CPU {info['load_cpu']}; "
               f"load average before the run: {info.get('loadavg', '?')}")
    out.append("")
    out.append("| balancer | requests/s | CPU µs/request | proxy CPU busy (%) | Ir/request | "
               "Ir ÷ strait round_robin | Ir − strait round_robin | requests per origin (%) | "
               "wrk errors |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |")
    for algo in info.get("algos", "").split():
        if algo in skipped:
            out.append(f"| strait {algo} | skipped: {skipped[algo].replace('|', '/')} "
                       "| | | | | | | |")
        else:
            out.append(row(f"strait {algo}", f"strait-{algo}"))
    out.append(row("nginx (round robin)", "nginx"))
    out.append("")
    out.append("Requests/s, CPU µs/request, proxy CPU busy and the split over the origins are "
               "medians over the load rounds (wrk errors: the sum); Ir/request is callgrind's "
               "count for N sequential keep-alive requests. Every row is the same Strait "
               "configuration but for `balance` (weights 1,2,3,4 with `weighted`; "
               "`hash_key = \"path\"` with `ring` and `maglev`), so the difference to "
               "strait round_robin is the balancer's own cost. Requests cycle over "
               f"{info.get('paths')} paths (/p/0, /p/1, ...; `/` when 1).")
    if info.get("origin_rps"):
        out.append("")
        out.append(f"One origin alone (wrk straight to the first origin, same settings, one run): "
                   f"{float(info['origin_rps']):,.0f} requests/s.")
    for note in info.get("notes", []):
        out.append("")
        out.append(f"Note: {note}")
    print("\n".join(out))


PROTOCOL_SCENARIOS = [
    ("https", "HTTPS/1.1, keep-alive (wrk)"),
    ("handshake", "HTTPS/1.1, new TLS connection per request (wrk, Connection: close)"),
    ("h2", "HTTP/2 over TLS, ALPN h2 (h2load)"),
    ("h2c", "HTTP/2 cleartext, prior knowledge (h2load)"),
]


def protocols_report(results_path, info_path):
    """MODE=protocols: one block of rows per scenario, strait vs nginx."""
    info = _read_info(info_path)
    values = {}
    for line in open(results_path):
        line = line.strip()
        if line:
            r = json.loads(line)
            values.setdefault((r["proxy"], r["metric"]), []).append(r["value"])

    def agg(proxy, key):
        v = values.get((proxy, key))
        if not v:
            return None
        return sum(v) if key.endswith("_errors") else statistics.median(v)

    def cells(key, fmt):
        s, n = agg("strait", key), agg("nginx", key)
        cell = lambda x: "n/a" if x is None else fmt.format(x)  # noqa: E731
        if s is not None and n not in (None, 0):
            ratio = f"{s / n:.2f}"
        elif s == 0 and n == 0:
            ratio = "—"
        else:
            ratio = "n/a"
        return f"{cell(s)} | {cell(n)} | {ratio}"

    out = []
    out.append("# Strait vs nginx — TLS and HTTP/2")
    out.append("")
    out.append(f"Run: {info['date']}  ")
    out.append(f"Machine: {info['nproc']} cores, {info['cpu']}, Linux {info['kernel']}  ")
    out.append(f"Strait: {info['strait_version']} (git {info['git']})  ")
    out.append(f"nginx: {info['nginx_version']} (OpenSSL {info.get('openssl_version', '?')}); "
               f"wrk: {info['wrk_version']}; h2load: {info.get('h2load_version', '?')}  ")
    out.append(f"Settings: MODE=protocols ROUNDS={info['rounds']} DURATION={info['duration']} "
               f"CONNS={info['conns']} HANDSHAKE_CONNS={info.get('handshake_conns')} "
               f"H2_CONNS={info.get('h2_conns')} H2_STREAMS={info.get('h2_streams')}; "
               f"proxy on CPU {info['proxy_cpu']}, load tool + origin on CPU {info['load_cpu']}; "
               f"load average before the run: {info.get('loadavg', '?')}")
    out.append("")
    out.append("| scenario | metric | strait | nginx | ratio (strait/nginx) |")
    out.append("| --- | --- | ---: | ---: | ---: |")
    wanted = info.get("scenarios", "").split()
    for sc, label in PROTOCOL_SCENARIOS:
        if sc not in wanted:
            continue
        rate = "handshakes/s" if sc == "handshake" else "requests/s"
        out.append(f"| {label} | {rate} | {cells(sc + '_rps', '{:,.0f}')} |")
        unit = "CPU µs/handshake" if sc == "handshake" else "CPU µs/request"
        out.append(f"| | {unit} | {cells(sc + '_cpu_us', '{:.2f}')} |")
        out.append(f"| | proxy CPU busy (%) | {cells(sc + '_cpu_busy', '{:.0f}')} |")
        if agg("strait", sc + "_p50_ms") is not None:
            out.append(f"| | latency p50 (ms) | {cells(sc + '_p50_ms', '{:.2f}')} |")
            out.append(f"| | latency p99 (ms) | {cells(sc + '_p99_ms', '{:.2f}')} |")
        out.append(f"| | errors (sum) | {cells(sc + '_errors', '{:.0f}')} |")
    out.append("")
    out.append("Both proxies run one worker on the same core, serve the same ECDSA P-256 "
               "certificate (TLS 1.2 and 1.3 allowed; the clients negotiate TLS 1.3), and "
               "forward over HTTP/1.1 keep-alive to the same origin (1 KiB body). Rows are "
               "medians over the rounds, which alternate the proxies; errors are summed. "
               "Every ratio is strait ÷ nginx: below 1 is better for strait in every row but "
               "the rates. CPU µs is the proxy's user + system time divided by the requests "
               "completed (for `handshake`, each request is one full handshake: wrk does not "
               "resume sessions).")
    for note in info.get("notes", []):
        out.append("")
        out.append(f"Note: {note}")
    print("\n".join(out))


FLOOD_KINDS = [
    ("partial", "Partial preface: each connection sent the byte `P`"),
    ("h1", "Idle HTTP/1.1 keep-alive, after one request each"),
    ("h2", "Idle HTTP/2 (h2c): preface + SETTINGS, no stream"),
]


def floods_report(results_path, info_path):
    """MODE=floods: connection floods, strait vs nginx."""
    info = _read_info(info_path)
    values = {}
    for line in open(results_path):
        line = line.strip()
        if line:
            r = json.loads(line)
            values.setdefault((r["proxy"], r["metric"]), []).append(r["value"])

    def agg(proxy, key):
        v = values.get((proxy, key))
        return statistics.median(v) if v else None

    def row(what, label, key, fmt, ratio=True):
        s, n = agg("strait", key), agg("nginx", key)
        if s is None and n is None:
            return None
        cell = lambda x: "n/a" if x is None else fmt.format(x)  # noqa: E731
        r = f"{s / n:.2f}" if ratio and s is not None and n not in (None, 0) else "—"
        return f"| {what} | {label} | {cell(s)} | {cell(n)} | {r} |"

    conns = info.get("flood_conns", "?")
    big = info.get("big_conns", "?")
    hold = info.get("flood_hold", "?")
    after = info.get("big_after", "?")
    rows = [
        row("No flood (the paced client alone)", "proxy CPU (% of a core)", "base_cpu", "{:.2f}"),
        row("", "paced client latency p50 (ms)", "base_p50_ms", "{:.3f}"),
        row("", "RSS (KiB)", "base_rss", "{:,.0f}"),
    ]
    for kind, label in FLOOD_KINDS:
        rows += [
            row(f"{label}; {conns} connections", "RSS per connection (KiB)",
                f"{kind}_kib", "{:.2f}"),
            row("", "proxy CPU while they sit (% of a core)", f"{kind}_cpu", "{:.2f}"),
            row("", "paced client latency p50 (ms)", f"{kind}_p50_ms", "{:.3f}"),
            row("", "connections still open after the hold", f"{kind}_alive", "{:.0f}", False),
            row("", "proxy CPU in the 2 s after the clients closed (% of a core)",
                f"{kind}_after_cpu", "{:.2f}"),
        ]
    mib = "{:,.1f}"
    rows += [
        row(f"{big} idle HTTP/1.1 connections (one request each), then all closed",
            "RSS before (MiB)", "big_before", mib),
        row("", f"RSS with all {big} open (MiB)", "big_during", mib),
        row("", "connections still open before the close", "big_alive", "{:.0f}", False),
        row("", "RSS 10 s after the close (MiB)", "big_after10", mib),
        row("", "RSS 30 s after (MiB)", "big_after30", mib),
        row("", "RSS 60 s after (MiB)", "big_after60", mib),
        row("", f"RSS {after} s after − before (MiB)", "big_excess", "{:+,.1f}", False),
        row("", f"back within 50 MiB of before {after} s after (1 = yes)", "big_ok", "{:.0f}",
            False),
        row("", "connections refused (strait: strait_client_connections_refused_total; nginx: "
            "\"worker_connections are not enough\" in its log)",
            "big_refused", "{:.0f}", False),
    ]
    out = []
    out.append("# Strait vs nginx — connection floods")
    out.append("")
    out.append(f"Run: {info['date']}  ")
    out.append(f"Machine: {info['nproc']} cores, {info['cpu']}, Linux {info['kernel']}  ")
    out.append(f"Strait: {info['strait_version']} (git {info['git']}), "
               f"allocator: {info.get('strait_allocator', '?')}  ")
    out.append(f"nginx: {info['nginx_version']}  ")
    out.append(f"Settings: MODE=floods FLOODS=\"{info.get('floods')}\" FLOOD_CONNS={conns} "
               f"FLOOD_HOLD={hold}s BIG_CONNS={big} BIG_AFTER={info.get('big_after')}s; "
               f"proxy on CPU {info['proxy_cpu']}, clients + origin on CPU {info['load_cpu']}; "
               f"load average before the run: {info.get('loadavg', '?')}")
    out.append("")
    out.append("| flood | metric | strait | nginx | ratio (strait/nginx) |")
    out.append("| --- | --- | ---: | ---: | ---: |")
    out.extend(r for r in rows if r is not None)
    out.append("")
    out.append("Each flood runs against a freshly started proxy (one worker each), after 200 "
               "sequential requests. RSS is VmRSS of the proxy's processes (nginx: master + "
               "worker); per connection is (RSS with the flood open − RSS before) ÷ "
               "connections; kernel socket memory is not in it. CPU is utime + stime over "
               f"{hold} s while the flood sits and a paced client sends one GET every 10 ms "
               "over its own keep-alive connection (whose cost is the no-flood row). "
               "MiB = 1024 KiB.")
    for note in info.get("notes", []):
        out.append("")
        out.append(f"Note: {note}")
    print("\n".join(out))



# What nginx does for each strait policy, where it has one.
POLICY_NGINX = {
    "none": "none",
    "ip_filter": "allow",
    "rate_limit": "limit_req",
    "basic_auth": "auth_basic",
    "forward_auth": "auth_request",
    "compress": "gzip",
}


def policies_report(results_path, info_path):
    """MODE=policies: callgrind instructions per request of each policy on
    the same request, each beside strait with no policy, and beside nginx's
    equivalent (and nginx with none) where nginx has one."""
    info = _read_info(info_path)
    ir = {}
    for line in open(results_path):
        line = line.strip()
        if line:
            r = json.loads(line)
            if r["metric"] == "ir":
                ir[r["proxy"]] = r["value"]
    base_s, base_n = ir.get("strait-none"), ir.get("nginx-none")
    out = [
        f"# Policies: instructions per request (callgrind, {info.get('n', '?')} "
        f"sequential keep-alive requests, one worker)",
        "",
        f"Machine: {info.get('cpu', '?')}, {info.get('nproc', '?')} cores; "
        f"strait {info.get('git', '?')}; nginx {info.get('nginx_version', '?')}; {info.get('date', '?')}.",
        "",
        "| policy | strait Ir/req | strait + | nginx equivalent | nginx Ir/req | nginx + |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for policy in info.get("policies", "").split():
        s = ir.get(f"strait-{policy}")
        ng = POLICY_NGINX.get(policy)
        n = ir.get(f"nginx-{policy}") if ng else None
        cell = lambda x: "n/a" if x is None else f"{x:,.0f}"  # noqa: E731
        plus = lambda x, b: "—" if x is None or b is None else f"{x - b:+,.0f}"  # noqa: E731
        out.append(
            f"| {policy} | {cell(s)} | {plus(s, base_s)} | {ng or '—'} | "
            f"{cell(n) if ng else '—'} | {plus(n, base_n) if ng else '—'} |"
        )
    mib = {}
    for line in open(results_path):
        line = line.strip()
        if line:
            r = json.loads(line)
            if r["metric"] == "gzip_mib_per_core":
                mib[r["proxy"]] = r["value"]
    if mib:
        s, n = mib.get("strait-compress"), mib.get("nginx-compress")
        out += [
            "",
            "Compression throughput (gzip level 5, a 256 KiB text response, wrk with 8 "
            "connections): MiB of text compressed per second of the proxy's CPU.",
            "",
            "| strait | nginx | strait/nginx |",
            "| ---: | ---: | ---: |",
            f"| {s or 0:.1f} | {n or 0:.1f} | {(s / n) if s and n else 0:.2f} |",
        ]
    out += ["", "How each was asked for is in bench/policies.sh (the same request to both proxies)."]
    print("\n".join(out))

COMMANDS = {
    "freeport": freeport, "pidtree": pidtree, "cputicks": cputicks,
    "rss": lambda *p: print(rss_kib(p)), "cpustat": cpustat, "timed": timed, "wait-port": wait_port, "seq": seq,
    "idle": idle, "wrk": wrk, "latency": latency, "callgrind": callgrind, "strace": strace,
    "dhat": dhat, "report": report, "balance-report": balance_report,
    "origin-requests": origin_requests, "h2load": h2load,
    "protocols-report": protocols_report, "flood": flood, "big-flood": big_flood,
    "metric": metric, "floods-report": floods_report, "policies-report": policies_report,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
