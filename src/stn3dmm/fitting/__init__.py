"""Fitting theta to 2-D landmarks through the STN's own layers, as eos has ``fitting/``.

Owns :func:`fit_landmarks` and :class:`FitResult` (:mod:`.landmarks`, with the prior weights),
the landmark problem (:mod:`.problem`: residuals and Jacobian, the closed-form pose, the checks
of degenerate input, the start) and one module per optimiser: Levenberg-Marquardt (:mod:`.lm`,
the default), L-BFGS (:mod:`.lbfgs`) and the original demo's plain gradient descent (:mod:`.gd`).

May import: :mod:`stn3dmm.core`, :mod:`stn3dmm.model`, :mod:`stn3dmm.stn`.
"""

from .landmarks import FitResult, fit_landmarks

__all__ = ["FitResult", "fit_landmarks"]
