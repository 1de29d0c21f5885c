"""The one compiled piece: nbnats/engine/_cut.c (see nbnats/engine/msg_cut.py).

Optional: where no C compiler is found the install goes on, and msg_cut's Python implementation
does the same work, more slowly. Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("nbnats.engine._cut", ["nbnats/engine/_cut.c"], optional=True)])
