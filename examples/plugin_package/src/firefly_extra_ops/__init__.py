"""firefly-extra-ops: an example firefly plugin adding ``softplus`` and ``gelu``.

firefly finds the ops through the ``firefly.ops`` entry points in pyproject.toml; importing
this package registers nothing by itself. Use them as ``firefly.ops.apply("gelu", x)``.
"""
__version__ = "0.1.0"
