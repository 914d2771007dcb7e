"""L-BFGS, torch's algorithm (``torch.optim.LBFGS``, after minFunc) step for step: the same
two-loop recursion, history updates, stopping tests and strong-Wolfe line search, so that a
float64 run follows torch's trajectory. The vectors are flat NumPy arrays over all parameters;
dot products and ``x + a * y`` updates run firefly.kernels.lbfgs, which rounds as torch does."""

from collections.abc import Callable
from typing import Any

import numpy as np

from firefly.autograd import enable_grad
from firefly.kernels import lbfgs as K
from firefly.optim.optimizer import Optimizer, _leaf_of
from firefly.validation import as_int, check_float


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), within ``bounds``
    (default: the interval's ends); the bounds' midpoint when the cubic has none."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """torch's ``_strong_wolfe``: a step t along d meeting the strong Wolfe conditions, by
    bracketing and then zooming with cubic interpolation. Returns (f, g, t, evaluations)."""
    d_norm = np.abs(d).max()
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = K.dot(g_new, d)

    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        # Bracket an interval holding a point that satisfies the conditions.
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        # Extrapolate.
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(
            t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step)
        )
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = K.dot(g_new, d)
        ls_iter += 1
    if ls_iter == max_ls:  # reached the most evaluations without a bracket
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # Zoom: shrink the bracket until a point satisfies the conditions.
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )
        # Keep t away from the bracket's ends unless progress stalls (minFunc's safeguard).
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = K.dot(g_new, d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


# The state torch keeps, in its order: vectors (flat arrays), lists of vectors, scalars.
_VECTORS = ("d", "prev_flat_grad")
_VECTOR_LISTS = ("old_dirs", "old_stps")
_SCALARS = ("func_evals", "n_iter", "t", "H_diag", "prev_loss")


class LBFGS(Optimizer):
    """``LBFGS(params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
    tolerance_change=1e-9, history_size=100, line_search_fn=None)``, as ``torch.optim.LBFGS``:
    ``step(closure)`` runs up to ``max_iter`` iterations (at most ``max_eval`` closure calls,
    default ``max_iter * 5 // 4``), each a quasi-Newton direction from the last
    ``history_size`` steps, taken with step ``lr`` or, with ``line_search_fn="strong_wolfe"``,
    a step meeting the strong Wolfe conditions. ``closure()`` recomputes the loss and its
    gradients (zero them first) and returns the loss. One param group only, as in torch."""

    def __init__(
        self,
        params: Any,
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        check_float("LBFGS", "lr", lr, 0.0)
        as_int("LBFGS", "max_iter", max_iter, 1)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        as_int("LBFGS", "max_eval", max_eval, 1)
        check_float("LBFGS", "tolerance_grad", tolerance_grad)
        check_float("LBFGS", "tolerance_change", tolerance_change)
        as_int("LBFGS", "history_size", history_size, 1)
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(
                f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}"
            )
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                "LBFGS: per-parameter options (several param groups) are not supported"
            )
        self._leaves = [_leaf_of(p) for p in self.param_groups[0]["params"]]
        self._sizes = [leaf._data.size for leaf in self._leaves]
        self.state: dict[str, Any] = {}

    def _gather_flat_grad(self) -> np.ndarray:
        return np.concatenate(
            [
                np.zeros(leaf._data.size, leaf._data.dtype)
                if leaf.grad is None
                else leaf.grad._data.reshape(-1)
                for leaf in self._leaves
            ]
        )

    def _add_grad(self, step_size: Any, update: np.ndarray) -> None:
        offset = 0
        for leaf, size in zip(self._leaves, self._sizes):
            flat = leaf._data.reshape(-1)  # a view: parameters are contiguous
            K.axpy(flat, step_size, update[offset : offset + size], flat)
            offset += size

    def _set_param(self, saved: list[np.ndarray]) -> None:
        for leaf, data in zip(self._leaves, saved):
            leaf._data[...] = data

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """One L-BFGS step (up to ``max_iter`` iterations); returns the first loss."""
        if closure is None:
            raise TypeError("LBFGS.step: a closure that recomputes the loss is required")

        def evaluate():
            with enable_grad():
                return closure()

        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]
        state = self.state
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = evaluate()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if np.abs(flat_grad).max() <= tolerance_grad:  # already optimal
            return orig_loss

        # Carried from the previous step (None on the first, which sets them before use).
        d: Any = state.get("d")
        t: Any = state.get("t")
        old_dirs: Any = state.get("old_dirs")
        old_stps: Any = state.get("old_stps")
        ro: Any = state.get("ro")
        H_diag: Any = state.get("H_diag")
        prev_flat_grad: Any = state.get("prev_flat_grad")
        prev_loss: Any = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            # The descent direction.
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = K.dot(y, s)
                if ys > 1e-10:  # update the memory
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / K.dot(y, y)
                # The two-loop recursion: the inverse Hessian approximation times -gradient.
                num_old = len(old_dirs)
                al = state.setdefault("al", [None] * history_size)
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = K.dot(old_stps[i], q) * ro[i]
                    K.axpy(q, -al[i], old_dirs[i], q)
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = K.dot(old_dirs[i], r) * ro[i]
                    K.axpy(r, al[i] - be_i, old_stps[i], r)
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss
            # The step length.
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / np.abs(flat_grad).sum()) * lr
            else:
                t = lr
            gtd = K.dot(flat_grad, d)
            if gtd > -tolerance_change:  # not a descent direction
                break
            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = [leaf._data.copy() for leaf in self._leaves]

                def obj_func(x, t, d):
                    return self._directional_evaluate(evaluate, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
                )
                self._add_grad(t, d)
                opt_cond = np.abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_grad(t, d)
                if n_iter != max_iter:
                    # Re-evaluate unless this was the last iteration (torch's saving).
                    loss = float(evaluate())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = np.abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals
            # The stopping tests.
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.abs(d * t).max() <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(
            d=d,
            t=t,
            old_dirs=old_dirs,
            old_stps=old_stps,
            ro=ro,
            H_diag=H_diag,
            prev_flat_grad=prev_flat_grad,
            prev_loss=prev_loss,
        )
        return orig_loss

    def state_dict(self) -> dict:
        """torch's layout: the state under the first parameter's index 0 (``d``,
        ``prev_flat_grad``, ``old_dirs``, ``old_stps``, ``ro``, ``al``, ``H_diag``, ``t``,
        ``n_iter``, ``func_evals``, ``prev_loss``), as copies of plain arrays and numbers."""
        saved: dict[str, Any] = {}
        for key, value in self.state.items():
            if key in _VECTORS:
                saved[key] = value.copy()
            elif key in _VECTOR_LISTS:
                saved[key] = [v.copy() for v in value]
            elif key in ("ro", "al"):
                saved[key] = [None if v is None else float(v) for v in value]
            else:
                saved[key] = value if isinstance(value, int) else float(value)
        return {"state": {0: saved} if saved else {}, "param_groups": self._group_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore ``state_dict()`` output (keys and numbers as ``firefly.save`` returns them
        too, and torch's LBFGS state with tensors converted by ``numpy()``)."""
        groups = self._checked_groups(state_dict)
        entries = state_dict["state"]
        saved = entries.get(0, entries.get("0", {})) if entries else {}
        unknown = set(saved) - set(_VECTORS + _VECTOR_LISTS + _SCALARS + ("ro", "al"))
        if unknown:
            raise ValueError(f"LBFGS.load_state_dict: unknown state keys {sorted(unknown)}")
        total = sum(self._sizes)
        dtype = np.result_type(*(leaf._data.dtype for leaf in self._leaves))
        state: dict[str, Any] = {}
        for key, value in saved.items():
            if key in _VECTORS or key in _VECTOR_LISTS:
                vectors = value if key in _VECTOR_LISTS else [value]
                arrays = [
                    np.array(getattr(v, "_data", v), dtype=dtype).reshape(-1) for v in vectors
                ]
                if any(a.size != total for a in arrays):
                    raise ValueError(
                        f"LBFGS.load_state_dict: {key} must hold vectors of {total} elements "
                        "(the parameters' total)"
                    )
                state[key] = arrays if key in _VECTOR_LISTS else arrays[0]
            elif key in ("ro", "al"):
                state[key] = [None if v is None else dtype.type(np.asarray(v)) for v in value]
            elif key in ("func_evals", "n_iter"):
                state[key] = int(np.asarray(value))
            else:
                state[key] = float(np.asarray(value))
        for group, saved_group in zip(self.param_groups, groups):
            group.update(saved_group)
        self.state = state
