"""firefly-extra-ops: an example firefly plugin adding ``extra_softplus``, ``extra_gelu`` and
``extra_clamp``.

firefly finds the ops through the ``firefly.ops`` entry points in pyproject.toml; importing
this package registers nothing by itself. Use them as ``firefly.ops.apply("extra_gelu", x)``.
"""

__version__ = "0.2.0"
