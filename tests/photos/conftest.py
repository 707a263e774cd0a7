"""Fixtures of the photo tests: the image-file corpus and matplotlib's sample photo (see testkit.photo_corpus)."""

from testkit.photo_corpus import corpus, grace  # noqa: F401  (fixtures)
