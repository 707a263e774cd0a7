"""cpu_threads: sets the counts (torch, OpenCV) inside the block, restores them after, even on error."""

import pytest
import torch

from stn3dmm.core.threads import cpu_threads


def test_sets_and_restores():
    before = torch.get_num_threads()
    with cpu_threads(1, "cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), cpu_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_sets_and_restores_opencv_threads_too():
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    with cpu_threads(1, "cpu"):
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before


def test_leaves_other_devices_and_none_alone():
    before = torch.get_num_threads()
    for n, dev in ((1, "meta"), (None, "cpu")):
        with cpu_threads(n, dev):
            assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match=">= 1"), cpu_threads(0, "cpu"):
        pass
