"""A throwaway Spark standalone cluster (one master, N workers) for tests.

Started from the pyspark wheel's own ``spark-class`` (no Spark download), on 127.0.0.1 only,
with ports chosen when it starts (a user's cluster on 7077 or a parallel test cannot clash)
and every directory it writes (work, local, logs) under one folder. Each JVM is started in
its own session, so that stopping its process group also ends what it started (a worker's
executors and their Python workers): nothing outlives :meth:`StandaloneCluster.stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick; taken again at once by the JVM)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class StandaloneCluster:
    """``start()`` one master and ``workers`` workers; ``stop()`` them, pass or fail."""

    root: Path
    workers: int = 2
    cores: int = 1
    memory: str = "1500m"
    port: int = field(default_factory=free_port)
    webui_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def worker_dir(self, index: int) -> Path:
        return self.root / f"worker-{index}" / "work"

    def env(self) -> dict[str, str]:
        """The environment of the cluster's JVMs (and of a client that should match them)."""
        conf = self.root / "spark-conf"  # empty: no spark-defaults.conf or log4j2 of the user's
        conf.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SPARK_", "PYSPARK_")) and k != "PYTHONPATH"
        }
        env.update(
            SPARK_HOME=str(spark_home()),
            SPARK_CONF_DIR=str(conf),
            SPARK_LOCAL_IP="127.0.0.1",  # bind to loopback only, never the machine's interfaces
            SPARK_LOCAL_DIRS=str(self.root / "local"),
            SPARK_LOG_DIR=str(self.root / "logs"),
            SPARK_PID_DIR=str(self.root / "pids"),
            SPARK_NO_DAEMONIZE="1",
        )
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log_dir = self.root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.root,
                # Its own process group: stop() signals the group, executors included.
                start_new_session=True,
            )
        self.procs.append(proc)

    def start(self, timeout: float = 180.0) -> None:
        env = self.env()
        self._spawn(
            "master",
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
            + ["--port", str(self.port), "--webui-port", str(self.webui_port)],
            env,
        )
        self._wait(lambda state: state is not None, timeout, "the master's web UI")
        for i in range(self.workers):
            work = self.worker_dir(i)
            work.mkdir(parents=True, exist_ok=True)
            worker_env = {**env, "SPARK_WORKER_DIR": str(work)}
            self._spawn(
                f"worker-{i}",
                ["org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1"]
                + ["--port", "0", "--webui-port", str(free_port())]
                + ["--cores", str(self.cores), "--memory", self.memory, "--work-dir", str(work)],
                worker_env,
            )
        self._wait(
            lambda state: state is not None and state.get("aliveworkers", 0) >= self.workers,
            timeout,
            f"{self.workers} workers registered",
        )

    def state(self) -> dict[str, Any] | None:
        """The master's JSON page (workers, running and completed applications), or None."""
        url = f"http://127.0.0.1:{self.webui_port}/json/"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                data: dict[str, Any] = json.load(resp)
                return data
        except OSError:
            return None

    def _wait(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a cluster JVM exited early:\n{self.logs()}")
            if ready(self.state()):
                return
            time.sleep(0.5)
        raise TimeoutError(f"waited {timeout:.0f}s for {what}:\n{self.logs()}")

    def logs(self, tail: int = 3000) -> str:
        out = []
        for path in sorted((self.root / "logs").glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    def stop(self, grace: float = 20.0) -> None:
        """End every JVM of the cluster and its children: SIGTERM to each process group, then
        SIGKILL to what is left after ``grace`` seconds."""
        groups = [p.pid for p in self.procs]  # each is its group's leader (start_new_session)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pgid in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, sig)
            for pid in self.alive():  # one that left its group (none so far)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.alive():
                for proc in self.procs:
                    proc.poll()  # reap the leaders we started
                time.sleep(0.2)
            if not self.alive():
                break
        for proc in self.procs:
            proc.poll()

    def alive(self) -> list[int]:
        """Ids of live processes of the cluster (zombies excluded): those in its JVMs' process
        groups, and any working in its folder (executors and their Python workers run in the
        workers' work dirs), should one have left its group."""
        groups = {p.pid for p in self.procs}
        root = str(self.root.resolve())
        live = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cwd = os.readlink(entry / "cwd")
            except OSError:  # gone meanwhile, or not ours to read
                continue
            # Fields after the command (which may hold spaces): state, ppid, pgrp ...
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            if int(fields[2]) in groups or cwd == root or cwd.startswith(root + "/"):
                live.append(int(entry.name))
        return live
