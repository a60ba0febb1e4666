"""Ctrl-C handling: graceful first stop, a second Ctrl-C that stops at once, no tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from aqa_framework.engine.signals import GracefulStop

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

# An ``aqa`` process with one extra command that presses Ctrl-C itself, at the moments a
# user's second Ctrl-C tends to land.
SCRIPT = textwrap.dedent(
    """
    import atexit, os, signal, sys, time
    from aqa_framework.cli import main as cli
    from aqa_framework.engine.signals import GracefulStop

    def ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(3)  # the handler runs here

    class JoinsWorkers:  # like a DataLoader iterator whose __del__ joins its workers
        def __del__(self):
            ctrl_c()

    @cli.app.command("hang")
    def hang(case: str) -> None:
        if case == "del":
            with GracefulStop(on_request=lambda name: print("stop requested", file=sys.stderr)):
                ctrl_c()
                JoinsWorkers()  # dropped at once: __del__ runs and gets the second Ctrl-C
                print("not reached: the second Ctrl-C was swallowed", file=sys.stderr)
        elif case == "cleanup":
            try:
                ctrl_c()
            finally:
                ctrl_c()
                print("not reached: cleanup went on", file=sys.stderr)
        elif case == "atexit":
            atexit.register(ctrl_c)  # Ctrl-C while the interpreter exits

    sys.argv = ["aqa", "hang", sys.argv[1]]
    cli.main()
    """
)


@pytest.mark.parametrize("case", ["del", "cleanup", "atexit"])
def test_second_ctrl_c_stops_at_once_without_a_traceback(case):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, case],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    err = proc.stderr
    assert proc.returncode == 130, err
    assert "stopping now" in err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "not reached" not in err
    if case == "del":
        assert "stop requested" in err


def test_second_ctrl_c_raises_keyboard_interrupt_outside_the_cli():
    before = signal.getsignal(signal.SIGINT)
    requested = []
    with pytest.raises(KeyboardInterrupt), GracefulStop(on_request=requested.append) as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested == "SIGINT"
        signal.raise_signal(signal.SIGINT)
    assert requested == ["SIGINT"]
    assert signal.getsignal(signal.SIGINT) is before


def test_in_process_main_restores_the_sigint_handler(capsys):
    from aqa_framework.cli.main import main

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert signal.getsignal(signal.SIGINT) is before
