"""Scoring against labelled faces: the field's protocol, the AFLW2000-3D benchmark, checkpoints.

Owns :mod:`.protocol` (NME normalised by the labelled box, |yaw| buckets with |yaw| > 90 in the
last, pose error), :mod:`.aflw2000` (the standard benchmark: its files, the scoring of all 2,000
faces, the published numbers beside ours), :mod:`.methods` (what is scored: the landmark
pipeline of ``stn3dmm flatten``, the raw detector) and :mod:`.checkpoint` (a trained
localiser on a training-style data set).

May import: every package below it (``core``, ``model``, ``stn``, ``nets``, ``photos``,
``fitting``, ``flatten``, ``training``).
"""
