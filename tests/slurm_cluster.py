"""A private one-node SLURM cluster for the tests (no tests here): Debian's slurm-wlm, started as the
current user in a temporary dir and stopped at teardown.

`slurm_cluster` (a module fixture; import slurm_cluster_fixture into the test module) writes a minimal
slurm.conf (one node, `localhost`, with this machine's CPUs; one default partition `debug`; no accounting;
state, spool, logs and pid files under the tmp dir; free ports), starts `slurmctld -D` and `slurmd -D` with
SLURM_CONF pointing at it, waits until `sinfo` shows the node idle, and gives the tests a `SlurmCluster`
whose `env` runs sbatch/squeue/scancel against it.

Authentication: Slurm up to 23.02 has `auth/none` and `cred/none` (no munged needed), which is what runs
here (Debian 12's slurm-wlm 22.05). Later Slurm dropped them; then a private munged is started with its own
key and socket (the `munge` package), and stopped at teardown too.

If slurmctld, slurmd or sbatch is missing the fixture fails (never skips), saying to run tools/install.sh."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SBIN_PATH = "/usr/sbin:/sbin:/usr/local/sbin"
# Where Debian (and other distributions) put Slurm's plugins; auth_none.so is there up to Slurm 23.02.
PLUGIN_DIRS = ["/usr/lib/*/slurm-wlm", "/usr/lib/*/slurm", "/usr/lib64/slurm", "/usr/lib/slurm", "/usr/local/lib/slurm"]
START_TIMEOUT = 90  # seconds until the node is idle (a few on an idle machine; the shared one is loaded)


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _has_auth_none() -> bool:
    return any(glob.glob(f"{d}/auth_none.so") for d in PLUGIN_DIRS)


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-n:])
    except OSError:
        return f"({path} was not written)\n"


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    env: dict[str, str]  # the environment for commands that talk to this cluster (SLURM_CONF set)
    node: str = "localhost"
    partition: str = "debug"

    def run(self, *args, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("env", self.env)
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, errors="replace", **kwargs)

    def logs(self) -> str:
        """The end of the daemons' logs, for a failure message."""
        return "".join(f"--- {p}:\n{_tail(p)}" for p in sorted((self.root / "log").glob("*")))


def _conf_text(root: Path, auth: str, ctld_port: int, slurmd_port: int, munge_socket: Path | None) -> str:
    cpus = os.cpu_count() or 1
    lines = [
        "ClusterName=hdmoletest",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        f"SlurmUser={pwd.getpwuid(os.geteuid()).pw_name}",  # the daemons run as the current user (root here)
        f"AuthType=auth/{auth}",
        f"CredType=cred/{auth}",
        *([f"AuthInfo=socket={munge_socket}"] if munge_socket else []),
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",  # no cgroups: runs in a container and without systemd
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "MailProg=/bin/true",
        "ReturnToService=2",
        # `sbatch --wait` polls every 2 s while it is below MinJobAge/2, then every 8 s and more: a small
        # MinJobAge keeps the test quick (the records of finished jobs still live until the next purge, >= 60 s).
        "MinJobAge=4",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.log",
        f"NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN",
        "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module", name="slurm_cluster")
def slurm_cluster_fixture(tmp_path_factory):
    tools = {name: _which(name) for name in ("slurmctld", "slurmd", "sbatch", "sinfo", "scancel")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the real-SLURM tests need Debian's slurm-wlm "
                    "(run tools/install.sh, which installs it)", pytrace=False)
    auth = "none" if _has_auth_none() else "munge"
    if auth == "munge" and not _which("munged"):
        pytest.fail("this Slurm has no auth/none plugin, so the test cluster needs munged: run tools/install.sh "
                    "(it installs munge)", pytrace=False)

    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SQUEUE_", "SINFO_"))}
    env["SLURM_CONF"] = str(root / "slurm.conf")
    env["PATH"] = f"{env.get('PATH', '/usr/bin:/bin')}:{SBIN_PATH}"

    procs: list[subprocess.Popen] = []
    outputs = []  # the daemons' stdout/stderr files
    munge_dir = None
    munge_socket = None

    def log_file(name):
        outputs.append(open(root / "log" / f"{name}.out", "w"))
        return outputs[-1]

    try:
        if auth == "munge":
            # munged wants its socket's dir open to everyone (execute), and pytest's tmp dirs are private.
            munge_dir = Path(tempfile.mkdtemp(prefix="hdmole-munge-"))
            munge_dir.chmod(0o755)
            key = munge_dir / "munge.key"
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
            munge_socket = munge_dir / "munge.socket"
            procs.append(subprocess.Popen(
                [_which("munged"), "-F", f"--key-file={key}", f"--socket={munge_socket}",
                 f"--pid-file={munge_dir}/munged.pid", f"--log-file={root}/log/munged.log",
                 f"--seed-file={munge_dir}/munged.seed"],
                stdout=log_file("munged"), stderr=subprocess.STDOUT, env=env))
            deadline = time.monotonic() + 30
            while not munge_socket.exists():
                if procs[-1].poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"munged did not start:\n{_tail(root / 'log' / 'munged.out')}", pytrace=False)
                time.sleep(0.2)

        ctld_port, slurmd_port = _free_ports(2)
        (root / "slurm.conf").write_text(_conf_text(root, auth, ctld_port, slurmd_port, munge_socket))
        cluster = SlurmCluster(root=root, conf=root / "slurm.conf", env=env)
        for daemon, args in (("slurmctld", ["-D", "-i"]), ("slurmd", ["-D", "-N", "localhost"])):
            procs.append(subprocess.Popen([tools[daemon], *args], stdout=log_file(daemon),
                                          stderr=subprocess.STDOUT, env=env, cwd=root))

        started = time.monotonic()
        deadline = started + START_TIMEOUT
        state = ""
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    pytest.fail(f"{Path(proc.args[0]).name} exited (code {proc.returncode}) while the test "
                                f"cluster started:\n{cluster.logs()}", pytrace=False)
            r = cluster.run("sinfo", "--noheader", "--nodes", "localhost", "--format", "%t", timeout=30)
            state = r.stdout.strip()
            if r.returncode == 0 and state == "idle":
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the test cluster's node is not idle after {START_TIMEOUT} s (sinfo: "
                            f"{state or r.stderr.strip()!r}):\n{cluster.logs()}", pytrace=False)
            time.sleep(0.5)
        print(f"the test cluster started in {time.monotonic() - started:.1f} s ({auth=}, {root})")
        yield cluster
    finally:
        if len(procs) > 1:  # jobs a failed test left behind: cancelled before their node goes
            try:
                subprocess.run([tools["scancel"], "--partition", "debug"], env=env, capture_output=True, timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for proc in reversed(procs):  # slurmd, slurmctld, then munged
            _stop(proc)
        for out in outputs:
            out.close()
        if munge_dir is not None:
            shutil.rmtree(munge_dir, ignore_errors=True)
