"""The fork server the probes start their processes from (forkserver.py) gives each one
what an exec'd `python -m cli` gets: its arguments, environment and exit status, and a
signal reaches it; what a fork cannot honour is exec'd."""
import json
import os
import signal
import subprocess

from . import forkserver
from .harness import ProcCluster, wait_for


def test_a_forked_command_gets_its_arguments_and_exit_status():
    assert "Usage: " in forkserver.run(["status", "--help"]).stdout
    refused = forkserver.run(["no-such-command"])
    assert refused.returncode == 2 and "No such command 'no-such-command'" in refused.stderr


def test_a_forked_command_reads_its_own_environment(tmp_path):
    """Two commands with different POCKET_GATEWAY_LISTEN, forked from one server: each
    reports the listen address of its own environment."""
    c = ProcCluster(str(tmp_path / "c"), nodes=6, embedded=True)
    for port in (1999, 2999):
        out = forkserver.run(["status", "--json", "--config", c.config],
                             env={**os.environ, "POCKET_GATEWAY_LISTEN": f"127.0.0.1:{port}"})
        assert json.loads(out.stdout)["gateway"] == {"running": False, "listen": f"127.0.0.1:{port}"}


def test_a_signal_reaches_the_forked_process_and_its_status_says_so(tmp_path):
    c = ProcCluster(str(tmp_path / "c"), nodes=6)
    with open(tmp_path / "n1.log", "ab") as log:
        proc = forkserver.spawn(["node", "--config", c.config, "--id", "n1", "--init"], dict(os.environ),
                                log.fileno(), log.fileno())
    assert isinstance(proc, forkserver.Forked)
    wait_for("the node listening", lambda: "serving 1 disks" in (tmp_path / "n1.log").read_text(), timeout=30)
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(15) == -signal.SIGKILL


def test_an_environment_only_exec_honours_is_exec_d():
    proc = forkserver.spawn(["--help"], {**os.environ, "LD_BIND_NOW": "1"}, subprocess.DEVNULL, subprocess.DEVNULL)
    assert isinstance(proc, subprocess.Popen) and proc.wait(60) == 0


def test_a_process_stopped_cleanly_exits_0_with_what_it_logged_last(tmp_path):
    """A forked process leaves without the interpreter's teardown (forkserver._become): its
    status and its last words (logged from the drain, flushed at exit) are still an exec'd one's."""
    c = ProcCluster(str(tmp_path / "c"), nodes=6)
    log_path = tmp_path / "n2.log"
    with open(log_path, "ab") as log:
        proc = forkserver.spawn(["node", "--config", c.config, "--id", "n2", "--init"], dict(os.environ),
                                log.fileno(), log.fileno())
    assert isinstance(proc, forkserver.Forked)
    wait_for("n2 serving", lambda: "serving 1 disks" in log_path.read_text(), timeout=30)
    proc.terminate()
    assert proc.wait(15) == 0
    assert log_path.read_text().rstrip().endswith("shutdown complete"), log_path.read_text()[-500:]
