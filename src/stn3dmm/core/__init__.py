"""The ground floor: conventions, file locations and writing, CPU threads, named defaults.

Owns :mod:`.conventions` (the one image convention, theta layout, scale maps, conversions from
the original release), :mod:`.paths` (the cache and atomic file writes), :mod:`.threads` (CPU
thread control) and :mod:`.defaults` (the input image size and the grid resolution R).

May import: nothing else of stn3dmm. Everything else may import it.
"""
