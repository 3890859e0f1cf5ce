"""Issue 16 §6: the OAuth client secret reaches the installer without being on its command line —
from a file, the environment, the parameters, or a prompt that does not echo — and the old
`--client-secret` still works but warns. The real installer runs as a subprocess each time."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import termios
import time

import pytest

from tests.install_helpers import CLIENT_ID, CLIENT_SECRET, INSTALL, Plugin

WARNING = "[warning] the OAuth client secret was given with --client-secret, where other users"


@pytest.fixture
def plugin(workbooks_server, tmp_path):
    return Plugin(workbooks_server, tmp_path)


def recorded_secret(plugin: Plugin):
    return ((plugin.state("install") or {}).get("oauth_client") or {}).get("client_secret")


def test_from_a_file(plugin, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(CLIENT_SECRET + "\n", encoding="utf-8")

    run = plugin.install("--client-id", CLIENT_ID, "--client-secret-file", str(secret_file))

    assert run.returncode == 0, run.output
    assert recorded_secret(plugin) == CLIENT_SECRET
    assert WARNING not in run.output and CLIENT_SECRET not in run.output


def test_an_unreadable_file_is_named_and_nothing_is_installed(plugin, tmp_path):
    missing = tmp_path / "no-such-secret"
    run = plugin.install("--client-id", CLIENT_ID, "--client-secret-file", str(missing))
    assert run.returncode == 2
    assert run.summary.startswith(f"[error] install failed: cannot read the client secret file {missing}")
    assert plugin.state("install") is None


def test_from_the_environment(plugin):
    run = plugin.install("--client-id", CLIENT_ID, env={"OUTREACH_CLIENT_SECRET": CLIENT_SECRET})
    assert run.returncode == 0, run.output
    assert recorded_secret(plugin) == CLIENT_SECRET
    assert WARNING not in run.output


def test_the_old_flag_still_works_and_warns(plugin):
    run = plugin.install("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET)
    assert run.returncode == 0, run.output
    assert recorded_secret(plugin) == CLIENT_SECRET
    assert WARNING in run.stdout and "use --client-secret-file, env OUTREACH_CLIENT_SECRET or the prompt" in run.stdout
    assert CLIENT_SECRET not in run.output


def test_without_a_terminal_there_is_no_prompt(plugin):
    """Workbooks runs the installer with no terminal: it must not wait for an answer."""
    run = plugin.install("--client-id", CLIENT_ID)       # stdin is not a terminal here
    assert run.returncode == 0, run.output
    assert recorded_secret(plugin) is None


def test_at_a_terminal_it_asks_without_echo(plugin, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps(plugin.params()), encoding="utf-8")
    master, slave = pty.openpty()
    # A new session has no controlling terminal, so the prompt reads the pty given as stdin.
    child = subprocess.Popen([sys.executable, str(INSTALL), "--client-id", CLIENT_ID, "--params", str(params)],
                             stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                             start_new_session=True, env={k: v for k, v in os.environ.items()
                                                          if k != "OUTREACH_CLIENT_SECRET"})
    try:
        deadline = time.monotonic() + 60
        while termios.tcgetattr(slave)[3] & termios.ECHO:          # until the prompt turned echo off
            assert child.poll() is None and time.monotonic() < deadline, "no prompt without echo"
            time.sleep(0.05)
        os.write(master, (CLIENT_SECRET + "\n").encode())
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        os.close(slave)
    echoed = _drain(master)
    os.close(master)

    assert child.returncode == 0, stdout.decode() + stderr.decode()
    assert "Outreach OAuth client secret (not shown):" in stderr.decode()
    assert recorded_secret(plugin) == CLIENT_SECRET
    assert CLIENT_SECRET not in echoed + stdout.decode() + stderr.decode()


def _drain(fd: int) -> str:
    import select
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")
