"""Event schemas: infer them from data (inference.py), register them for subject patterns (registry.py),
check frames against them (check.py); documents.py words what broke.

>>> s = nbnats.schema.infer(df)                  # doctest: +SKIP
>>> nbnats.schema.register("orders.*", s)        # doctest: +SKIP
>>> nbnats.schema.check(df)                      # doctest: +SKIP
"""

from nbnats.schema.check import check
from nbnats.schema.inference import InferredSchema, infer
from nbnats.schema.registry import BUCKET, get, ls, register, rm, validate

__all__ = ["BUCKET", "InferredSchema", "check", "get", "infer", "ls", "register", "rm", "validate"]
