"""Checkpoints: ``save(state, path)`` and ``load(path)`` in NumPy's .npz format, or in the
safetensors format when the path ends in ``.safetensors``; never pickled.

A checkpoint is a nested structure of dicts, lists and tuples whose leaves are arrays (or
Tensors or Parameters, saved as arrays), Python numbers, strings, booleans or None: a model's
``state_dict()``, an optimizer's, an epoch counter. Each array is one .npz entry named by its
path of keys ("model/fc1.weight"); the structure, with every array replaced by a reference to
its entry, is one JSON string stored as a unicode array. Nothing is pickled, so loading a
checkpoint cannot run code.

A ``.safetensors`` file (the ``safetensors`` extra) holds the same entries under the same names:
a model's state_dict keeps its keys ("fc1.weight"), so torch and other safetensors readers
load it as it is; a nested state is flattened to path keys joined by "/" ("model/fc1.weight",
"optimizer/state/0/exp_avg"), and its structure is the JSON string of the metadata entry
``__firefly_structure__``. A safetensors file written by another program (torch's
``safetensors.torch.save_file``) has no such entry and loads as a flat dict of arrays. String
arrays cannot be stored in safetensors.

Format versions: 1 was written by firefly before it took torch's Linear layout and holds each
``Linear.weight`` as (in_features, out_features); 2 holds it as torch does, (out_features,
in_features). A version-1 file still loads: ``load`` warns once, and the dicts it returns are
marked (``format_version``), so that ``Module.load_state_dict`` and an optimizer's
``load_state_dict`` transpose those weights, and their optimizer state, on the way in.
"""

from __future__ import annotations

import json
import numbers
import os
import tempfile
import warnings
import weakref
import zipfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from firefly.tensor import Tensor

STRUCTURE_KEY = "__firefly_structure__"
# Entry names that np.savez would take as its own arguments (the entry would be lost, or the
# call would fail), besides the structure's own entry.
RESERVED_ENTRY_NAMES = frozenset({STRUCTURE_KEY, "file", "allow_pickle"})
FORMAT = "firefly-checkpoint"
VERSION = 2
TORCH_LINEAR_VERSION = 2  # the first version with Linear weights as (out_features, in_features)
READABLE_VERSIONS = (1, 2)

# id -> weak reference of each Parameter that Module.load_state_dict transposed out of a
# version-1 state, so that the optimizer state saved beside it is transposed too (a square
# weight's shape cannot tell). Not a WeakSet: that compares members with ==, elementwise here.
_converted_from_version_1: dict[int, weakref.ref[Any]] = {}


def mark_converted(param: Tensor) -> None:
    """Record that ``param`` was loaded from a version-1 state and transposed."""
    key = id(param)

    def forget(_: weakref.ref[Any]) -> None:
        _converted_from_version_1.pop(key, None)

    _converted_from_version_1[key] = weakref.ref(param, forget)


def was_converted(param: Tensor) -> bool:
    ref = _converted_from_version_1.get(id(param))
    return ref is not None and ref() is param


class VersionedState(dict):
    """A dict read from a checkpoint of an older format version, marked with that version."""

    format_version = VERSION


def format_version(state: Any) -> int:
    """The checkpoint format ``state`` was read from (the current one for any other dict)."""
    return getattr(state, "format_version", VERSION)


class _Encoder:
    """Turns the nested state into JSON-able structure plus a dict of named arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def entry_name(self, path: list[str]) -> str:
        base = "/".join(path) or "value"
        name, n = base, 1
        while name in self.arrays or name in RESERVED_ENTRY_NAMES:  # keys with "/" can collide
            name, n = f"{base}#{n}", n + 1
        return name

    def add_array(self, array: np.ndarray, path: list[str]) -> dict[str, str]:
        if array.dtype.hasobject or array.dtype.kind not in "biufcUS":
            raise TypeError(
                f"firefly.save: '{'/'.join(path)}' is an array of dtype {array.dtype}; "
                "only numeric, "
                "bool and string arrays can be saved (object arrays would need pickle)"
            )
        name = self.entry_name(path)
        self.arrays[name] = array
        return {"array": name}

    def encode(self, value: Any, path: list[str]) -> Any:
        if isinstance(value, Tensor):  # a Parameter too
            return self.add_array(value._data, path)
        if isinstance(value, np.ndarray):
            return self.add_array(value, path)
        if isinstance(value, np.generic):  # keeps its dtype: stored 0-d, loaded as a scalar
            return {"scalar": self.add_array(np.asarray(value), path)["array"]}
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)  # json writes repr(float): exact, inf and nan included
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise TypeError(
                        "firefly.save: dict keys must be str or int, "
                        f"got {type(key).__name__} {key!r} "
                        f"at '{'/'.join(path)}'"
                    )
                items.append([key, self.encode(item, path + [str(key)])])
            return {"dict": items}
        if isinstance(value, (list, tuple)):
            encoded = [self.encode(item, path + [str(i)]) for i, item in enumerate(value)]
            return {"tuple": encoded} if isinstance(value, tuple) else encoded
        raise TypeError(
            f"firefly.save: cannot save a {type(value).__name__} "
            f"at '{'/'.join(path) or '<root>'}'; "
            "save arrays, Tensors, numbers, strings, None, and dicts/lists/tuples of them"
        )


def _decode(node: Any, arrays: dict[str, Any], version: int = VERSION) -> Any:
    if isinstance(node, list):
        return [_decode(item, arrays, version) for item in node]
    if isinstance(node, dict):
        if "array" in node:
            return arrays[node["array"]]
        if "scalar" in node:
            return arrays[node["scalar"]][()]
        if "tuple" in node:
            return tuple(_decode(item, arrays, version) for item in node["tuple"])
        items = {key: _decode(item, arrays, version) for key, item in node["dict"]}
        if version == VERSION:
            return items
        marked = VersionedState(items)
        marked.format_version = version
        return marked
    return node


def _current_umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _safetensors(what: str) -> Any:
    from firefly.install import install_hint

    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            f"{what}: .safetensors files need the safetensors package: "
            f"{install_hint('safetensors')}"
        ) from None
    return safetensors


def _is_safetensors(path: str) -> bool:
    return path.endswith(".safetensors")


def save(state: Any, path: str | os.PathLike[str]) -> None:
    """Write ``state`` to ``path`` (.npz, or .safetensors by its suffix) atomically.

    The data goes to a temporary file in the same folder, is flushed to disk, and then renamed
    over ``path``: a crash at any point leaves either the old checkpoint or the new one, never a
    truncated file.
    """
    path = os.fspath(path)
    encoder = _Encoder()
    structure = {"format": FORMAT, "version": VERSION, "root": encoder.encode(state, [])}
    if _is_safetensors(path):
        safetensors = _safetensors("firefly.save")
        for name, array in encoder.arrays.items():
            if array.dtype.kind in "US":
                raise TypeError(
                    f"firefly.save: '{name}' is a string array, which safetensors cannot store; "
                    "save to .npz instead"
                )
        arrays = {name: np.ascontiguousarray(a) for name, a in encoder.arrays.items()}
        payload = safetensors.numpy.save(arrays, metadata={STRUCTURE_KEY: json.dumps(structure)})
        _write_atomically(path, lambda f: f.write(payload))
        return
    entries = dict(encoder.arrays)
    entries[STRUCTURE_KEY] = np.array(json.dumps(structure))
    # entry_name keeps "allow_pickle" and "file" out of the entries; numpy's stubs cannot see it
    _write_atomically(path, lambda f: np.savez(f, **entries))  # type: ignore[arg-type]


def _write_atomically(path: str, write: Callable[[IO[bytes]], object]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file readable by its owner only; give it the mode a plain open()
        # would.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _load_safetensors(path: str) -> dict[str, Any]:
    safetensors = _safetensors("firefly.load")
    try:
        with safetensors.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except (OSError, ValueError, safetensors.SafetensorError) as exc:
        raise ValueError(
            f"firefly.load: {path} is not a readable .safetensors file ({exc})"
        ) from None
    if STRUCTURE_KEY in metadata:
        arrays[STRUCTURE_KEY] = metadata[STRUCTURE_KEY]
    return arrays


def load(path: str | os.PathLike[str]) -> Any:
    """Read a checkpoint written by ``save``; arrays come back as ndarrays.

    A plain .npz written by NumPy, or a .safetensors file written by another program (torch's
    ``safetensors.torch.save_file``), loads as a dict of its arrays. Files holding object
    arrays are refused: reading them would mean unpickling.
    """
    path = os.fspath(path)
    if _is_safetensors(path):
        return _interpret(_load_safetensors(path), path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ValueError(f"firefly.load: {path} is not an .npz checkpoint ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"firefly.load: {path} holds a single .npy array, not an .npz checkpoint")
    with npz:
        arrays = {}
        for name in npz.files:
            try:
                arrays[name] = npz[name]
            except ValueError as exc:
                raise ValueError(
                    f"firefly.load: entry '{name}' of {path} is an object array, which can only be "
                    f"read by unpickling; firefly refuses to unpickle ({exc})"
                ) from None
    return _interpret(arrays, path)


def _interpret(arrays: dict[str, Any], path: str) -> Any:
    """The saved state from a file's named arrays and, when firefly wrote it, its structure."""
    if STRUCTURE_KEY not in arrays:
        return arrays
    structure = json.loads(str(arrays.pop(STRUCTURE_KEY)))
    version = structure.get("version")
    if structure.get("format") != FORMAT or version not in READABLE_VERSIONS:
        raise ValueError(
            f"firefly.load: {path} has format {structure.get('format')!r} version "
            f"{version!r}; this firefly reads {FORMAT!r} versions {list(READABLE_VERSIONS)}"
        )
    if version < TORCH_LINEAR_VERSION:
        warnings.warn(
            f"firefly.load: {path} is a checkpoint of format {version}, which stored "
            "Linear weights as (in_features, out_features); load_state_dict converts them to "
            f"torch's (out_features, in_features). Save it again to store format {VERSION}.",
            UserWarning,
            stacklevel=2,
        )
    return _decode(structure["root"], arrays, version)
