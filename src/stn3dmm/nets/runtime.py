"""Networks run by onnxruntime on the CPU: the shipped localiser's fast path.

Owns :class:`OnnxNetwork` (a network's ONNX graph run by onnxruntime, called as the torch network
is: crops ``(B, 3, S, S)`` in [0, 1] in, theta ``(B, P)`` out) and :func:`export_onnx` (a torch
network -> its ONNX graph, with ``torch.onnx.export``; that needs the ``onnx`` and ``onnxscript``
packages, ``pip install -e ".[ship]"``: at ship time, never at run time).

Why a second runtime: eager PyTorch pays a fixed cost per layer and call, which dominates the
small batches of a cascade (one to a few dozen crops); onnxruntime plans the graph once and fuses
its layers. On the 2-core CPU of this project it runs the shipped MobileNetV2 two to three times
faster at batch 1 and at batch 64 (``python benchmarks/localiser_speed.py`` measures both in one
run). 3DDFA_V2 (Guo et al. 2020) runs its regressor through onnxruntime for the same reason. The
graph holds the same weights: a shipped graph is exported from the shipped state dict, and the
tests check that both give the same theta.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

#: The ONNX operator set the graphs are exported with (onnxruntime 1.23 runs up to 23).
OPSET = 18


class OnnxNetwork:
    """A localiser's ONNX graph, run by onnxruntime on the CPU, called as its torch network is.

    Args:
        graph: the serialised ONNX model (:func:`export_onnx`), with one input ``(B, 3, S, S)``
            of any batch size and one output ``(B, P)``.
        image_size: ``(S, S)``, the crop side it takes (as the torch network's ``image_size``).
        name: where it came from, for error messages (a file name).

    Each call runs with as many intra-op threads as ``torch.get_num_threads()`` says at that moment
    (one session per thread count, made on first use), so that ``torch.set_num_threads`` and
    :func:`~stn3dmm.core.threads.cpu_threads` govern it as they govern torch. Waiting threads
    sleep rather than spin: on a machine of few cores a spinning pool steals the core that the face
    detector's thread needs.

    Raises:
        ValueError: ``graph`` is not a model onnxruntime can run (naming ``name``).
    """

    def __init__(self, graph: bytes, image_size, name: str = "<graph>"):
        self.graph, self.name = bytes(graph), str(name)
        self.image_size = tuple(int(s) for s in image_size)
        self._sessions: dict[int, object] = {}
        self._input = self._session(1).get_inputs()[0].name

    def _session(self, threads: int):
        session = self._sessions.get(threads)
        if session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.log_severity_level = 3          # errors only: no notes on stderr for every session
            try:
                session = ort.InferenceSession(self.graph, opts, providers=["CPUExecutionProvider"])
            except Exception as e:      # a damaged or foreign file: say which, not a bare runtime error
                raise ValueError(f"{self.name}: not an ONNX graph onnxruntime can run ({type(e).__name__}: "
                                 f"{str(e)[:200]})") from None
            self._sessions[threads] = session
        return session

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` float crops in [0, 1] -> ``(B, P)`` theta (float32, on the CPU)."""
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(f"{self.name}: expected crops (B, 3, {self.image_size[0]}, {self.image_size[1]}), "
                             f"got {tuple(images.shape)}")
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        out = self._session(max(1, torch.get_num_threads())).run(None, {self._input: x})[0]
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return f"OnnxNetwork({self.name!r}, image_size={self.image_size})"


def export_onnx(net: torch.nn.Module) -> bytes:
    """The ONNX graph of a localiser ``net`` (eval mode, on the CPU, any batch size), for
    :class:`OnnxNetwork`. Uses ``torch.onnx.export``'s ``torch.export``-based exporter, which needs
    the ``onnx`` and ``onnxscript`` packages (``pip install -e ".[ship]"``).

    Raises:
        ImportError: those packages are missing (saying how to install them).
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(f"exporting a network to ONNX needs the onnx and onnxscript packages ({e}); "
                          "install them with: pip install -e \".[ship]\"") from None
    size = tuple(int(s) for s in net.image_size)
    net = net.eval().cpu()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")          # the exporter's notes on its own internals
        program = torch.onnx.export(net, (torch.rand(2, 3, *size),), dynamo=True, opset_version=OPSET,
                                    input_names=["crops"], output_names=["theta"],
                                    dynamic_shapes={"images": {0: batch}}, verbose=False)
    return program.model_proto.SerializeToString()


__all__ = ["OnnxNetwork", "export_onnx", "OPSET"]
