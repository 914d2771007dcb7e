"""The intrinsics that run a driven kernel's shares (``_jit.run_shares``) and that the loops
``_jit.sized_kernel`` rewrites into shares call. Their code is compiled into every such kernel,
so the kernels' cache stamps cover this file (``_cache._Dependencies``): it holds nothing else,
and an edit of ``_jit.py`` recompiles none of them."""

from llvmlite import ir
from numba.core import cgutils
from numba.core import types as numba_types
from numba.core.callconv import RETCODE_NONE, RETCODE_OK
from numba.extending import intrinsic, register_jitable


class _ShareRaised(Exception):
    """A share of ``each_share`` raised; run_shares then runs the shares on its own thread."""


def _share_function(context, module, kernel, closure_type):
    """A function for the threading layer's ``parallel_for`` (a gufunc's loop: ``void (char
    **arrays, intp *count, intp *steps, void *data)``) that calls the driven kernel
    ``kernel`` (its native function) once for each share in its chunk of a (threads,) int64
    array of flags, and sets the flag of a share that raised. ``data`` points to the flags and
    the kernel's arguments (t, threads, the rest, as its native function takes them); the
    chunk's offset in the flags gives its first share."""
    i64, byte_ptr = ir.IntType(64), ir.IntType(8).as_pointer()
    share = ir.Function(
        module,
        ir.FunctionType(
            ir.VoidType(), [byte_ptr.as_pointer(), i64.as_pointer(), i64.as_pointer(), byte_ptr]
        ),
        kernel.name + "__share",
    )
    share.linkage = "internal"
    builder = ir.IRBuilder(share.append_basic_block("entry"))
    arrays, count, _, data = share.args
    closure = builder.bitcast(data, closure_type.as_pointer())
    flags, *arguments = (
        builder.load(cgutils.gep_inbounds(builder, closure, 0, i))
        for i in range(len(closure_type.elements))
    )
    chunk = builder.bitcast(builder.load(arrays), i64.as_pointer())
    first = builder.ashr(
        builder.sub(builder.ptrtoint(chunk, i64), builder.ptrtoint(flags, i64)), i64(3)
    )
    result = cgutils.alloca_once(builder, kernel.args[0].type.pointee)
    excinfo = cgutils.alloca_once(builder, kernel.args[1].type.pointee)
    with cgutils.for_range(builder, builder.load(count)) as loop:
        t = builder.add(first, loop.index)
        # not inlined: the share function stays small, and the kernel is optimized once
        code = builder.call(kernel, [result, excinfo, t, *arguments[1:]], attrs=("noinline",))
        # Numba's status codes: OK, or NONE for a function that returned None; others raised
        returned = builder.or_(
            builder.icmp_signed("==", code, RETCODE_OK),
            builder.icmp_signed("==", code, RETCODE_NONE),
        )
        builder.store(builder.zext(builder.not_(returned), i64), builder.gep(chunk, [loop.index]))
    builder.ret_void()
    return share


def _failed_shares(context, builder, callee, arguments, threads_value):
    """Calls ``callee``, a driven kernel's native function, with (t, the rest of
    ``arguments``: its native arguments after t) for t in range(threads_value), at once on
    Numba's threads, through the threading layer's ``parallel_for`` (which a prange's loop
    calls) over a small function of this module (``_share_function``). Returns how many
    shares raised (their errors do not cross ``parallel_for``), as an int64."""
    i64, byte_ptr = ir.IntType(64), ir.IntType(8).as_pointer()
    module = builder.module
    flags = builder.alloca(i64, size=threads_value)
    closure_type = ir.LiteralStructType([flags.type] + [a.type for a in arguments])
    share = module.globals.get(callee.name + "__share") or _share_function(
        context, module, callee, closure_type
    )
    closure = cgutils.alloca_once(builder, closure_type)
    for i, value in enumerate([flags, *arguments]):
        builder.store(value, cgutils.gep_inbounds(builder, closure, 0, i))
    arrays = cgutils.alloca_once_value(builder, builder.bitcast(flags, byte_ptr))
    count = cgutils.alloca_once_value(builder, threads_value)
    steps = cgutils.alloca_once_value(builder, i64(8))
    parallel_for = cgutils.get_or_insert_function(
        module, ir.FunctionType(ir.VoidType(), [byte_ptr] * 5 + [i64] * 3), "numba_parallel_for"
    )
    get_num_threads = cgutils.get_or_insert_function(
        module, ir.FunctionType(i64, []), "get_num_threads"
    )
    builder.call(
        parallel_for,
        [builder.bitcast(p, byte_ptr) for p in (share, arrays, count, steps, closure)]
        + [i64(0), i64(1), builder.call(get_num_threads, [])],
    )
    failed = cgutils.alloca_once_value(builder, i64(0))
    with cgutils.for_range(builder, threads_value) as loop:
        flag = builder.load(builder.gep(flags, [loop.index]))
        builder.store(builder.add(builder.load(failed), flag), failed)
    return builder.load(failed)


@intrinsic
def each_share(typingctx, threads):
    """In a ``driven_kernel`` (called with t < 0): the kernel itself called with (t, threads,
    its other arguments) for t in range(threads), at once on Numba's threads
    (``_failed_shares``): no parfor to compile, and the kernel's body is neither copied nor
    optimized again. Raises ``_ShareRaised`` if a share raised."""

    def codegen(context, builder, signature, llargs):
        (threads_value,) = llargs
        kernel = builder.function
        arguments = list(context.call_conv.get_arguments(kernel))
        failed = _failed_shares(context, builder, kernel, arguments, threads_value)
        raised = builder.icmp_unsigned("!=", failed, failed.type(0))
        with cgutils.if_unlikely(builder, raised):
            context.call_conv.return_user_exc(builder, _ShareRaised, ("a share raised",))
        return context.get_dummy_value()

    return numba_types.none(threads), codegen


@intrinsic
def each_share_of(typingctx, kernel, threads, arguments):
    """``kernel(t, threads, *arguments)`` for t in range(threads), at once on Numba's threads
    (``_failed_shares``), where ``kernel`` is a compiled loop cut into shares (a rewritten
    ``sized_kernel`` loop) and ``arguments`` a tuple. Returns how many shares raised.

    The launcher of a sized kernel's parallel run: a small function compiled only when a
    process first runs that kernel in parallel, so that the loop itself, which every run
    calls, carries no parallel_for call and no raise, and compiles as cheaply as a plain
    loop."""
    if not isinstance(kernel, numba_types.Dispatcher) or not isinstance(
        arguments, numba_types.BaseTuple
    ):
        return None
    int64 = numba_types.int64
    call = kernel.get_call_type(typingctx, (int64, int64, *arguments.types), {})

    def codegen(context, builder, signature, llargs):
        _, threads_value, packed = llargs
        threads_value = context.cast(builder, threads_value, threads, int64)
        compiled = kernel.dispatcher.overloads[tuple(call.args)]
        context.add_linking_libs([compiled.library])
        callee = cgutils.get_or_insert_function(
            builder.module,
            context.call_conv.get_function_type(call.return_type, call.args),
            compiled.fndesc.llvm_func_name,
        )
        values = [
            context.cast(builder, builder.extract_value(packed, i), given, wanted)
            for i, (given, wanted) in enumerate(zip(arguments.types, call.args[2:], strict=True))
        ]
        # t's place is taken by each share's t (_share_function)
        native = context.call_conv._get_arg_packer(call.args).as_arguments(
            builder, [threads_value.type(0), threads_value, *values]
        )
        return _failed_shares(context, builder, callee, list(native), threads_value)

    return int64(kernel, threads, arguments), codegen


@intrinsic
def assume_nonnegative(typingctx, value):
    """Tells LLVM that the integer ``value`` is not negative here (``llvm.assume``), so that
    Numba's wraparound of a negative index folds away where ``value`` indexes arrays. Wrong
    if ``value`` can be negative: the code is then undefined."""

    def codegen(context, builder, signature, llargs):
        (integer,) = llargs
        assume = builder.module.declare_intrinsic("llvm.assume")
        builder.call(assume, [builder.icmp_signed(">=", integer, integer.type(0))])
        return context.get_dummy_value()

    if not isinstance(value, numba_types.Integer):
        return None
    return numba_types.none(value), codegen


@register_jitable(inline="always")
def share_range(t, threads, n):
    """Items i0 .. i1 of n that share t of ``threads`` takes (``run_shares``): contiguous,
    near-equal runs, in order."""
    return t * n // threads, (t + 1) * n // threads
