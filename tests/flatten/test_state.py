"""Signals held back while a worker process is handed its start-up data."""

import os
import signal

import pytest

from stn3dmm.flatten.state import Terminated, signals_deferred


@pytest.mark.parametrize("sig, raised", [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_inside_is_raised_after_the_block(sig, raised):
    done = []
    before = signal.getsignal(sig)
    with pytest.raises(raised):
        with signals_deferred():
            os.kill(os.getpid(), sig)
            done.append("the block went on")
    assert done == ["the block went on"]
    assert signal.getsignal(sig) is before


def test_no_signal_no_exception():
    with signals_deferred():
        pass
