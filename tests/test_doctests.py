"""The runnable examples in the core modules' docstrings are true."""

import doctest
import importlib

import pytest

MODULES = ["nbnats.data.validate", "nbnats.data.frames", "nbnats.data.payload", "nbnats.runtime.loop", "nbnats.errors",
           "nbnats.magics.registry", "nbnats.magics.core", "nbnats.magics.wording", "nbnats.magics.present", "nbnats.magics.complete", "nbnats.tail", "nbnats.progress",
           "nbnats.widgets.tail_view", "nbnats.data.units", "nbnats.data.packed", "nbnats.data.ring", "nbnats.engine.acks", "nbnats.engine.errors",
           "nbnats.engine.pull", "nbnats.engine.bulk", "nbnats.widgets.table", "nbnats.jetstream.display",
           "nbnats.jetstream.consume"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
