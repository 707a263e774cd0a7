"""Learning the localiser through the 3DMM-STN: the loop, its config, batches, checkpoints, evaluation.

Owns :mod:`.loop` (the training step, its state, logs and loop), :mod:`.config` (the typed TOML
config), :mod:`.batches` (data sets from a config, identity pairing, the batch schedule),
:mod:`.checkpoints` (durable writes, safe loading), :mod:`.evaluate` (landmark NME by yaw, pose
error, consistency) and :mod:`.data` (data-set readers, the renderer, synthetic data).

May import: every package below it (:mod:`stn3dmm.core`, ``model``, ``stn``, ``nets``,
``photos``, ``fitting``, ``flatten``).
"""
