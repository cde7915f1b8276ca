#!/usr/bin/env python3
"""test_service_ready.py BIN: the daemons' readiness for systemd's Type=notify.

The test plays the service manager: it binds a datagram socket, names it in NOTIFY_SOCKET and
starts each daemon as its unit would. It checks that
- the coordinator sends READY=1, and that at that moment its --metrics endpoint already answers
  a scrape (readiness comes after the listener, not before);
- `rollout serve` does the same on the same coordinator directory;
- the agent sends READY=1 once its first connection is set up, with no coordinator running;
- a coordinator that cannot start (its metrics port taken) exits non-zero and never says
  READY=1.
"""
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1]


def free_port():
    # Below the kernel's ephemeral range, so no outgoing connection of a test running beside
    # this one takes it before the daemon binds it (as tests/lib/http_testutil.h does).
    rnd = random.Random(os.getpid() * 1000003 + time.time_ns())
    for _ in range(2000):
        p = rnd.randrange(20000, 32768)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port in 20000-32767")


def run(*args):
    subprocess.run([BIN, *args], check=True, stdout=subprocess.DEVNULL)


def wait_ready(w, name, args, scrape_port=None, timeout=60):
    """Starts BIN args with NOTIFY_SOCKET; returns (process, messages) once READY=1 came."""
    path = os.path.join(w, name + ".notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    log = open(os.path.join(w, name + ".log"), "wb")
    p = subprocess.Popen([BIN, *args], env=env, stdout=log, stderr=log)
    msgs, t0 = [], time.time()
    try:
        while time.time() - t0 < timeout:
            try:
                m = sock.recv(4096).decode()
            except socket.timeout:
                if p.poll() is not None:
                    return p, msgs
                continue
            msgs.append(m)
            if "READY=1" in m.split("\n"):
                if scrape_port:
                    # Scraped at once, before anything else: it must already answer.
                    body = urllib.request.urlopen(
                        "http://127.0.0.1:%d/metrics" % scrape_port, timeout=5).read().decode()
                    assert "condenser_start_time_seconds" in body, body[:200]
                return p, msgs
        raise AssertionError("%s: no READY=1 within %d s; got %r; log:\n%s" % (
            name, timeout, msgs, open(os.path.join(w, name + ".log")).read()))
    finally:
        sock.close()


def stop(p):
    p.terminate()
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def main():
    w = tempfile.mkdtemp(prefix="cnd_ready.")
    c = os.path.join(w, "coord")
    run("ca", "init", "--dir", os.path.join(w, "ca"), "--name", "ready test")
    run("coordinator", "init", "--dir", c, "--ca", os.path.join(w, "ca"))

    mport = free_port()
    p, msgs = wait_ready(w, "coordinator", ["coordinator", "run", "--dir", c, "--endpoint",
                                            "tcp://127.0.0.1:*", "--metrics",
                                            "127.0.0.1:%d" % mport], scrape_port=mport)
    assert p.poll() is None and any("READY=1" in m for m in msgs), msgs
    assert any("STATUS=tcp://127.0.0.1:" in m for m in msgs), msgs
    print("ok coordinator: READY=1 with metrics already served", msgs)

    # Its metrics port is taken now: a second coordinator fails and never says READY=1.
    p2, msgs2 = wait_ready(w, "coordinator-busy", ["coordinator", "run", "--dir", c, "--endpoint",
                                                    "tcp://127.0.0.1:*", "--metrics",
                                                    "127.0.0.1:%d" % mport], timeout=60)
    assert p2.wait(30) != 0, "a coordinator with its metrics port taken kept running"
    assert not any("READY=1" in m for m in msgs2), msgs2
    print("ok coordinator with a taken port: exit %d, no READY=1" % p2.returncode)
    stop(p)

    rport = free_port()
    p, msgs = wait_ready(w, "rollout", ["rollout", "serve", "--dir", c, "--endpoint",
                                        "tcp://127.0.0.1:*", "--metrics",
                                        "127.0.0.1:%d" % rport], scrape_port=rport)
    print("ok rollout serve: READY=1 with metrics already served", msgs)
    stop(p)

    s = os.path.join(w, "site")
    run("keygen", "--out", s)
    run("ca", "issue", "--dir", os.path.join(w, "ca"), "--name", "site-a", "--role", "site",
        "--pubkey", os.path.join(s, "identity.pub"), "--out", os.path.join(s, "site.pem"))
    with open(os.path.join(s, "labels.idx"), "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 2, 0, 1]))
    with open(os.path.join(s, "images.idx"), "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(8))
    with open(os.path.join(s, "agent.ini"), "w") as f:
        f.write("[site]\nname = site-a\ndata = idx:images.idx,labels.idx\n"
                "[identity]\nkey = identity.key\ncertificate = site.pem\n"
                "[coordinator]\nendpoint = tcp://127.0.0.1:%d\npublic_key = %s\n"
                "ca_cert = ../ca/ca.crt\nca_crl = ../ca/crl.pem\n"
                % (free_port(), os.path.join(c, "identity.pub")))
    p, msgs = wait_ready(w, "agent", ["agent", "--config", os.path.join(s, "agent.ini")])
    assert p.poll() is None, "the agent exited"
    print("ok agent: READY=1 with no coordinator up yet", msgs)
    stop(p)
    subprocess.run(["rm", "-rf", w])


if __name__ == "__main__":
    main()
