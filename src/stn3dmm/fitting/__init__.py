"""Fitting theta to 2-D landmarks through the STN's own layers, as eos has ``fitting/``.

Owns :func:`fit_landmarks` and :class:`FitResult` (:mod:`.landmarks`, with the prior weights),
the landmark problem (:mod:`.problem`: residuals and Jacobian, the closed-form pose, the checks
of degenerate input, the start) and one module per optimiser: Levenberg-Marquardt (:mod:`.lm`,
the default), L-BFGS (:mod:`.lbfgs`) and the original demo's plain gradient descent (:mod:`.gd`);
and fitting by regression, a trained localiser's theta for faces in photos (:mod:`.localiser`,
with :func:`~.localiser.load_localiser` for the one that ships in the package).

May import: :mod:`stn3dmm.core`, :mod:`stn3dmm.model`, :mod:`stn3dmm.stn`, :mod:`stn3dmm.nets`,
:mod:`stn3dmm.photos`.
"""

from .landmarks import FitResult, fit_landmarks

__all__ = ["FitResult", "fit_landmarks"]
