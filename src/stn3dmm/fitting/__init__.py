"""Fitting theta to 2-D landmarks through the STN's own layers, as eos has ``fitting/``.

Owns :func:`fit_landmarks` and :class:`FitResult`, with three optimisers: Levenberg-Marquardt
(the default), L-BFGS and the original demo's plain gradient descent.

May import: :mod:`stn3dmm.core`, :mod:`stn3dmm.model`, :mod:`stn3dmm.stn`.
"""

from .landmarks import FitResult, fit_landmarks

__all__ = ["FitResult", "fit_landmarks"]
