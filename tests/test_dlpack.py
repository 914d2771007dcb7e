"""DLPack: firefly tensors share memory with NumPy and torch in both directions; strided or
read-only sources are copied (firefly tensors are contiguous and writeable); a GPU source and
a tensor that requires grad get clear errors."""

import numpy as np
import pytest

import firefly


def test_numpy_and_firefly_share_memory_both_ways():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = firefly.from_dlpack(array)
    assert tensor.dtype == np.float32 and tensor.shape == (2, 3)
    array[0, 0] = 7.0
    assert tensor[0, 0].item() == 7.0
    back = np.from_dlpack(tensor)
    back[1, 2] = -1.0
    assert tensor.numpy()[1, 2] == -1.0 and array[1, 2] == -1.0
    assert np.shares_memory(back, array)


def test_integer_data_keeps_its_dtype():
    labels = firefly.from_dlpack(np.array([3, 1, 2], dtype=np.int64))
    assert labels.dtype == np.int64 and labels.tolist() == [3, 1, 2]


def test_torch_and_firefly_share_memory_both_ways():
    torch = pytest.importorskip("torch", reason="pip install torch==2.13.0")
    source = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    tensor = firefly.from_dlpack(source)
    source[1, 1] = 42.0
    assert tensor.numpy()[1, 1] == 42.0
    assert tensor.numpy().ctypes.data == source.data_ptr()
    ours = firefly.Tensor(np.ones((3, 2)))
    theirs = torch.from_dlpack(ours)
    theirs.mul_(3.0)
    np.testing.assert_array_equal(ours.numpy(), np.full((3, 2), 3.0))
    assert theirs.data_ptr() == ours.numpy().ctypes.data


def test_strided_and_read_only_sources_are_copied_with_the_same_values():
    torch = pytest.importorskip("torch", reason="pip install torch==2.13.0")
    transposed = torch.arange(6.0).reshape(2, 3).T  # torch shares it as a strided view
    tensor = firefly.from_dlpack(transposed)
    np.testing.assert_array_equal(tensor.numpy(), transposed.numpy())
    assert tensor.numpy().flags.c_contiguous
    transposed[0, 0] = 100.0
    assert tensor.numpy()[0, 0] == 0.0  # a copy
    read_only = np.arange(4.0)
    read_only.flags.writeable = False
    tensor = firefly.from_dlpack(read_only)
    np.testing.assert_array_equal(tensor.numpy(), read_only)
    assert tensor.numpy().flags.writeable and not np.shares_memory(tensor.numpy(), read_only)
    tensor.numpy()[0] = 5.0  # writeable: in-place updates work
    assert read_only[0] == 0.0


class OnTheGPU:
    def __dlpack__(self, stream=None):
        raise AssertionError("the capsule must not be taken from a GPU object")

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0


def test_a_gpu_source_and_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="from_dlpack: the OnTheGPU is on a CUDA device"):
        firefly.from_dlpack(OnTheGPU())
    with pytest.raises(TypeError, match="from_dlpack: expected an object with __dlpack__"):
        firefly.from_dlpack([1.0, 2.0])
    with pytest.raises(TypeError, match="from_dlpack"):
        firefly.from_dlpack(np.ones(2, dtype=np.float16))


def test_a_tensor_that_requires_grad_is_not_exported():
    weight = firefly.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="requires grad.*detach"):
        np.from_dlpack(weight)
    assert np.shares_memory(np.from_dlpack(weight.detach()), weight.numpy())
    assert weight.__dlpack_device__() == (1, 0)
