"""Test builders shared by the tests and the benchmarks (importable: pytest puts ``tests/`` on the path).

* :mod:`.synthetic_models`: synthetic grid models and known-answer meshes built from formulas;
* :mod:`.photo_corpus`: a corpus of good and bad image files, made by the tests themselves;
* :mod:`.reader_fixtures`: tiny data sets in the readers' real formats (landmark dot images,
  UMDFaces CSV, 300W-LP / AFLW2000-3D ``.mat``), written by the tests themselves.
"""
