"""The distribution's name on the package index and the install hints built from it.

The package imports as ``firefly``, but "firefly" on PyPI is another project (a particle
viewer), so this library is published as ``firefly-dl``; ``pip install "firefly[...]"`` would
install the other one.
"""

DISTRIBUTION = "firefly-dl"


def install_hint(extra: str) -> str:
    """The pip command that installs optional extra ``extra``: from the index, from a checkout."""
    return f'pip install "{DISTRIBUTION}[{extra}]" (from a checkout: pip install ".[{extra}]")'
