"""The processes that scripts/bench and scripts/chaos start: a free loopback port, /proc,
and Server, a master process and its workers started in a temporary directory and stopped
by pid. Both scripts put this directory on sys.path and import it."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Skip(Exception):
    """A measurement that could not run; the message says why."""


# ---------------------------------------------------------------------------------------
# /proc

def proc_stat(pid):
    """Fields of /proc/PID/stat as a dict, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()   # fields 3.. (comm may hold spaces)
    return {
        "state": rest[0],                          # field 3
        "ppid": int(rest[1]),                      # field 4
        "utime": int(rest[11]), "stime": int(rest[12]),    # fields 14, 15
        "cutime": int(rest[13]), "cstime": int(rest[14]),  # fields 16, 17
        "starttime": int(rest[19]),                # field 22
    }


def children(pid):
    """Live (non-zombie) child pids of pid."""
    found = []
    try:   # fast path: the kernel's own list of children of the (single) main thread
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            found = [int(p) for p in f.read().split()]
    except OSError:
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = proc_stat(name)
                if st and st["ppid"] == pid:
                    found.append(int(name))
    out = []
    for c in found:
        st = proc_stat(c)
        if st and st["ppid"] == pid and st["state"] != "Z":
            out.append(c)
    return sorted(out)


def descendants(pid):
    out = []
    for c in children(pid):
        out.append(c)
        out.extend(descendants(c))
    return out


def vmrss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------
# Servers

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(*paths, lines=10):
    """The last lines of each of these files (those that exist), after a newline, or ""."""
    out = ""
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                tail = f.readlines()[-lines:]
        except OSError:
            continue
        out += "".join(ln if ln.endswith("\n") else ln + "\n" for ln in tail)
    return "\n" + out.rstrip("\n") if out else ""


class Server:
    """A server under test: a master process and its workers, started in a temp dir.

    Use as a context manager: the server is started on entry and stopped on exit, also
    on errors and Ctrl-C. stop() signals the master by pid, then SIGKILLs by pid any
    process of the server still alive (checked against its start time)."""

    name = "server"
    stop_signal = signal.SIGTERM
    reload_signal = signal.SIGHUP

    def __init__(self, workers=2, prefix=None):
        self.workers = workers
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix=prefix or f"bench-{self.name}-")
        self.proc = None
        self.seen = {}     # pid -> starttime of every process of this server seen

    # to be provided by subclasses
    def command(self):
        raise NotImplementedError

    def env(self):
        return None

    def ready(self):
        """True once the server answers and all its workers are up."""
        raise NotImplementedError

    def log_tail(self):
        return ""

    def statuses(self):
        """{status code (str): responses so far} as the server counts them, or None."""
        return None

    def start(self, timeout=15.0):
        out = open(os.path.join(self.tmp, "stdout.log"), "wb")
        try:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env(),
                                         cwd=self.tmp, start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Skip(f"{self.name} exited with status {self.proc.returncode} at start"
                           + self.log_tail())
            if self.ready():
                self.pids()
                return self
            time.sleep(0.05)
        raise Skip(f"{self.name} was not ready after {timeout:.0f} s" + self.log_tail())

    @property
    def master(self):
        return self.proc.pid

    def pids(self):
        """The master and all its live descendants."""
        pids = [self.master] + descendants(self.master)
        for p in pids:
            st = proc_stat(p)
            if st:
                self.seen.setdefault(p, st["starttime"])
        return pids

    def worker_pids(self):
        return children(self.master)

    def cpu(self):
        """CPU seconds (user + system) used so far by the master and every worker, live or
        already reaped by the master (its cutime/cstime)."""
        ticks = 0
        for p in self.pids():
            st = proc_stat(p)
            if st:
                ticks += st["utime"] + st["stime"]
                if p == self.master:
                    ticks += st["cutime"] + st["cstime"]
        return ticks / CLK_TCK

    def signal(self, sig):
        os.kill(self.master, sig)

    def stop(self, timeout=12.0):
        if self.proc is None:
            return
        # a second Ctrl-C must not interrupt the clean-up
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            if self.proc.poll() is None:
                self.pids()
                try:
                    self.signal(self.stop_signal)
                    self.proc.wait(timeout)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    pass
            # the master is gone (or hung): whatever is left of the server gets SIGKILL
            deadline = time.monotonic() + 3.0
            while True:
                left = [p for p, start in self.seen.items()
                        if (st := proc_stat(p)) and st["starttime"] == start and st["state"] != "Z"]
                if not left or time.monotonic() > deadline:
                    break
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        finally:
            self.proc = None
            shutil.rmtree(self.tmp, ignore_errors=True)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
