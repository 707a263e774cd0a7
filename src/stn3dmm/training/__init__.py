"""Learning the localiser through the 3DMM-STN: the loop, its config, batches, checkpoints, data.

Owns :mod:`.loop` (the training step, its state, logs and loop), :mod:`.config` (the typed TOML
config), :mod:`.batches` (data sets from a config, identity pairing, the batch schedule),
:mod:`.checkpoints` (durable writes, safe loading) and :mod:`.data` (data-set readers, the
renderer, synthetic data). Scoring a checkpoint is :mod:`stn3dmm.evaluation`'s.

May import: every package below it (:mod:`stn3dmm.core`, ``model``, ``stn``, ``nets``,
``photos``, ``fitting``, ``flatten``).
"""
