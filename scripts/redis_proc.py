"""The Redis processes that scripts/bench and scripts/chaos start: redis-server plain, over
TLS (--tls-port, with certificates of a CA of its own made with the openssl CLI), as a
replica (--replicaof), and Sentinel (`redis-server FILE --sentinel`: Debian's redis-server
7.0 runs Sentinel without the redis-sentinel package). Each on free loopback ports in a
temporary directory, without persistence, and stopped by pid (sessiond_proc.Server).
call() is a small RESP client (stdlib socket and ssl) for the scripts' own checks.
Both scripts put this directory on sys.path and import it."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

from sessiond_proc import Server, Skip, free_port, log_tail

REDIS_SERVER = "/usr/bin/redis-server"
MASTER_NAME = "mymaster"


def redis_server_path():
    """redis-server's path, or raise Skip."""
    if os.access(REDIS_SERVER, os.X_OK):
        return REDIS_SERVER
    path = shutil.which("redis-server")
    if not path:
        raise Skip("redis-server is not installed; run scripts/install-deps bench")
    return path


# ---------------------------------------------------------------------------------------
# Certificates

def _openssl(*args):
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    except FileNotFoundError:
        raise Skip("the openssl command is not installed")
    except subprocess.CalledProcessError as e:
        raise Skip(f"openssl {args[0]} failed: {e.stderr.decode(errors='replace').strip()}")


def make_ca(d, name="bench-ca"):
    """A CA of its own (ECDSA P-256, 2 days): (crt, key) in directory d."""
    crt, key = os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return crt, key


def issue(d, ca, name, san):
    """A certificate for san (subjectAltName syntax, e.g. "IP:127.0.0.1") signed by ca."""
    crt, key, csr = (os.path.join(d, f"{name}.{x}") for x in ("crt", "key", "csr"))
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", crt, "-days", "2", "-extfile", ext)
    return crt, key


def make_pki(d):
    """{"ca", "server", "client"}: (crt, key) each, in d. The server's certificate names
    IP:127.0.0.1 (and DNS:localhost); the client's is for a Redis that asks for one."""
    ca = make_ca(d)
    return {"ca": ca,
            "server": issue(d, ca, "redis", "IP:127.0.0.1,DNS:localhost"),
            "client": issue(d, ca, "sessiond", "DNS:sessiond")}


# ---------------------------------------------------------------------------------------
# RESP

class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _reply(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("Redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        if len(data) != n + 2:
            raise ConnectionError("Redis closed the connection")
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_reply(f) for _ in range(n)]
    raise ConnectionError(f"not a RESP reply: {line[:40]!r}")


def call(port, *args, ca=None, cert=None, timeout=1.0):
    """One command on a new connection to 127.0.0.1:port (TLS when ca names the CA that
    signed the server's certificate; cert a (crt, key) to present). Returns the reply
    (str, int, None or a list); raises RedisError or OSError."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if ca:
            ctx = ssl.create_default_context(cafile=ca)
            if cert:
                ctx.load_cert_chain(cert[0], cert[1])
            sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(_encode(args))
        with sock.makefile("rb") as f:
            return _reply(f)
    finally:
        sock.close()


def pairs(flat):
    """["k1", "v1", "k2", "v2"] -> {"k1": "v1", "k2": "v2"} (SENTINEL replies)."""
    return dict(zip(flat[::2], flat[1::2]))


def info(port, section="replication", **kw):
    """INFO section as a dict of its key:value lines."""
    text = call(port, "INFO", section, **kw) or ""
    return dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)


def wait_until(predicate, timeout, what, interval=0.05):
    """predicate()'s first true value within timeout s (exceptions count as false), or
    raise Skip naming what."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = predicate()
            if v:
                return v
        except (OSError, RedisError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise Skip(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------
# Processes

class Redis(Server):
    """redis-server on a free loopback port, no persistence (--save "" --appendonly no).

    tls: make_pki()'s dict: also (or, with plain=False, only) a TLS port, self.tls_port,
    with the server's certificate; clients are asked for a certificate when
    tls_auth_clients is "yes" ("optional": verified if presented). replicaof: the port
    of the master to replicate. kill() and restart() SIGKILL it and start it again on
    the same ports, empty; pause() and resume() SIGSTOP and SIGCONT it (all by pid)."""

    name = "redis"

    def __init__(self, tls=None, plain=True, replicaof=None, tls_auth_clients="no", extra=()):
        self.binary = redis_server_path()
        super().__init__(workers=0, prefix="redis-")
        self.tls, self.plain = tls, plain
        self.tls_port = free_port() if tls else None
        self.replicaof, self.tls_auth_clients, self.extra = replicaof, tls_auth_clients, extra
        self.restarts = 0
        if not plain and not tls:
            raise ValueError("Redis with neither a plain nor a TLS port")

    def command(self):
        cmd = [self.binary, "--port", str(self.port if self.plain else 0),
               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", self.tmp, "--daemonize", "no", "--logfile", "",
               "--protected-mode", "no"]
        if self.tls:
            cmd += ["--tls-port", str(self.tls_port),
                    "--tls-cert-file", self.tls["server"][0],
                    "--tls-key-file", self.tls["server"][1],
                    "--tls-ca-cert-file", self.tls["ca"][0],
                    "--tls-auth-clients", self.tls_auth_clients]
        if self.replicaof:
            cmd += ["--replicaof", "127.0.0.1", str(self.replicaof)]
        return cmd + list(self.extra)

    def call(self, *args, timeout=1.0):
        """A command on the plain port (or the TLS one when there is no plain port)."""
        if self.plain:
            return call(self.port, *args, timeout=timeout)
        return call(self.tls_port, *args, ca=self.tls["ca"][0],
                    cert=self.tls["client"] if self.tls_auth_clients == "yes" else None,
                    timeout=timeout)

    def ready(self):
        try:
            return self.call("PING", timeout=0.5) == "PONG"
        except (OSError, RedisError):
            return False

    def log_tail(self):
        return log_tail(os.path.join(self.tmp, "stdout.log"))

    def pause(self):
        os.kill(self.master, signal.SIGSTOP)

    def resume(self):
        os.kill(self.master, signal.SIGCONT)

    def kill(self):
        """SIGKILL by pid (and any child it forked, e.g. for a full sync); keeps the
        ports and the directory for restart()."""
        if self.proc is None:
            return
        pids = self.pids()
        for p in reversed(pids):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None

    def restart(self, replicaof=None, timeout=10.0):
        """Start again on the same ports, empty; replicaof (a port), when given, replaces
        the one it was started with. Returns once it answers PING."""
        if self.proc is not None:
            self.kill()
        if replicaof is not None:
            self.replicaof = replicaof
        self.restarts += 1
        old = os.path.join(self.tmp, "stdout.log")
        if os.path.exists(old):
            os.replace(old, os.path.join(self.tmp, f"stdout.{self.restarts}.log"))
        return self.start(timeout)

    def stop(self, timeout=12.0):
        if self.proc is None:        # killed and not restarted: only its directory is left
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self.resume()            # a SIGSTOPped redis-server would not act on SIGTERM
        except ProcessLookupError:
            pass
        super().stop(timeout)

    def role(self):
        return info(self.port if self.plain else self.tls_port)["role"]

    def replica_ports(self):
        """Ports of the replicas this master sees online."""
        found = []
        for k, v in info(self.port).items():
            if k.startswith("slave") and k[5:].isdigit():
                f = dict(x.split("=", 1) for x in v.split(","))
                if f.get("state") == "online":
                    found.append(int(f["port"]))
        return found

    def wait_synced(self, timeout=15.0):
        """A replica: wait until its link to the master is up (the full sync done)."""
        wait_until(lambda: info(self.port).get("master_link_status") == "up", timeout,
                   f"replica on port {self.port} synced with its master")


class Sentinel(Server):
    """Redis Sentinel (`redis-server FILE --sentinel`) watching the master on
    master_port under MASTER_NAME, with the down-after, failover-timeout and quorum
    given; its config file and `dir` in its own temp dir (Sentinel rewrites it)."""

    name = "sentinel"

    def __init__(self, master_port, quorum=1, down_after_ms=1000, failover_timeout_ms=5000,
                 name=MASTER_NAME):
        self.binary = redis_server_path()
        super().__init__(workers=0, prefix="sentinel-")
        self.master_name = name
        self.conf = os.path.join(self.tmp, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.tmp}\n"
                    "protected-mode no\ndaemonize no\nlogfile \"\"\n"
                    f"sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n"
                    f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                    f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
                    f"sentinel parallel-syncs {name} 1\n")

    def command(self):
        return [self.binary, self.conf, "--sentinel"]

    def call(self, *args, timeout=1.0):
        return call(self.port, *args, timeout=timeout)

    def ready(self):
        try:
            return self.master_addr() is not None
        except (OSError, RedisError):
            return False

    def log_tail(self):
        return log_tail(os.path.join(self.tmp, "stdout.log"))

    def master_addr(self):
        """(host, port) of the master as this Sentinel sees it now."""
        r = self.call("SENTINEL", "get-master-addr-by-name", self.master_name)
        return (r[0], int(r[1])) if r else None

    def master_info(self):
        return pairs(self.call("SENTINEL", "master", self.master_name))

    def replicas(self):
        return [pairs(r) for r in self.call("SENTINEL", "replicas", self.master_name)]

    def sees_replica(self, port):
        """True when Sentinel lists the replica on port as a healthy replica (flags
        exactly "slave", its link to the master up), i.e. one it would promote."""
        for r in self.replicas():
            if int(r.get("port", 0)) == port and r.get("flags") == "slave" \
                    and r.get("master-link-status") == "ok":
                return True
        return False


def sentinels_directive(sentinels):
    """The redis_sentinels value for these Sentinel processes."""
    return ",".join(f"127.0.0.1:{s.port}" for s in sentinels)


class Replicated:
    """A master, its replicas and Sentinels watching them, started in that order (so
    that each Sentinel finds the replicas in the master's first INFO); on exit every
    one is stopped by pid. sentinels: how many (quorum 1, as the tests want it)."""

    def __init__(self, replicas=1, sentinels=1, down_after_ms=1000, failover_timeout_ms=5000):
        self.n_replicas, self.n_sentinels = replicas, sentinels
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.master = None
        self.replicas, self.sentinels = [], []

    def all(self):
        return [p for p in [self.master, *self.replicas, *self.sentinels] if p is not None]

    # A full sync starts at once, not after Redis 7's default 5 s wait for more replicas:
    # a replica (re)joining is then in sync within a second, and a measurement of the
    # server in front of it does not measure that wait.
    SYNC = ("--repl-diskless-sync-delay", "0")

    def start(self):
        self.master = Redis(extra=self.SYNC).start()
        for _ in range(self.n_replicas):
            self.replicas.append(Redis(replicaof=self.master.port, extra=self.SYNC).start())
        for r in self.replicas:
            r.wait_synced()
        for _ in range(self.n_sentinels):
            self.sentinels.append(Sentinel(self.master.port, quorum=1,
                                           down_after_ms=self.down_after_ms,
                                           failover_timeout_ms=self.failover_timeout_ms).start())
        # Sentinel learns replicas from the master's INFO and other Sentinels from their
        # hellos (every 2 s): a failover started before then would find no candidate.
        for s in self.sentinels:
            for r in self.replicas:
                wait_until(lambda: s.sees_replica(r.port), 20,
                           f"Sentinel on {s.port} listing the replica on {r.port}")
            if self.n_sentinels > 1:
                wait_until(lambda: int(s.master_info().get("num-other-sentinels", 0))
                           == self.n_sentinels - 1, 20,
                           f"Sentinel on {s.port} knowing the other Sentinels")
        return self

    def master_port(self):
        """The master's port as the first Sentinel that answers says, or None."""
        for s in self.sentinels:
            try:
                addr = s.master_addr()
                if addr:
                    return addr[1]
            except (OSError, RedisError):
                continue
        return None

    def pids(self):
        return [p for srv in self.all() if srv.proc is not None for p in srv.pids()]

    def stop(self):
        for srv in reversed(self.all()):
            srv.stop()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
