"""Event schemas: infer them from data, register them for subject patterns, check frames against them.

>>> s = nbnats.schema.infer(df)                  # doctest: +SKIP
>>> nbnats.schema.register("orders.*", s)        # doctest: +SKIP
>>> nbnats.schema.check(df)                      # doctest: +SKIP
"""

from nbnats.schema.registry import (BUCKET, InferredSchema, check, get, infer, ls, register, rm,  # noqa: F401
                                    validate)

__all__ = ["BUCKET", "InferredSchema", "check", "get", "infer", "ls", "register", "rm", "validate"]
