"""The Examples sections of stn3dmm.stn run as doctests: documentation that has to stay true.

Every module of the package is searched (:class:`doctest.DocTestFinder`); each module with
public functions or classes must have examples, every public function and class defined in
it must carry at least one, and none may fail.
"""

import doctest
import importlib
import inspect
import pkgutil

import pytest

import stn3dmm.stn

MODULES = sorted(m.name for m in pkgutil.iter_modules(stn3dmm.stn.__path__, "stn3dmm.stn."))
# public names that are data, not code to show: a NamedTuple / dataclass documented with its producer
NO_EXAMPLE = {"Projection", "STNOutput"}


def _public_code(module) -> list[str]:
    """Public functions and classes defined in ``module`` (not imported into it)."""
    return sorted(name for name, obj in vars(module).items()
                  if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
                  and obj.__module__ == module.__name__)


def _run(module):
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    lines = []
    runner = doctest.DocTestRunner(verbose=False)
    for t in tests:
        runner.run(t, out=lines.append)
    return tests, runner.summarize(verbose=False), "".join(lines)


def test_every_module_is_found():
    assert {"stn3dmm.stn.layers", "stn3dmm.stn.visibility", "stn3dmm.stn.module"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_examples_run_and_pass(name):
    module = importlib.import_module(name)
    tests, results, report = _run(module)
    public = _public_code(module)
    if public:
        assert results.attempted > 0, f"{name} has public code {public} but no examples"
    with_examples = {t.name.rsplit(".", 1)[-1] for t in tests}
    missing = [p for p in public if p not in with_examples and p not in NO_EXAMPLE]
    assert not missing, f"{name}: public functions/classes without an Examples section: {missing}"
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples of {name} failed:\n{report}"
