"""What the examples show besides their printed lines: a tqdm progress bar per epoch, and
training curves written with matplotlib (``--plot FILE.png``). Both come with the examples
extra (``pip install "firefly-dl[examples]"``); without tqdm there is no bar, and ``--plot``
without matplotlib stops before training with one line saying what to install."""

import sys
import time


class EpochBar:
    """A bar over one epoch's samples with the running loss and samples per second, shown while
    the epoch runs and cleared after it (the example's epoch line stays). Nothing when tqdm is
    missing or ``stream`` (default stderr) is not a terminal."""

    def __init__(self, epoch, epochs, samples, stream=None):
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
            return
        self.bar = tqdm(
            total=samples,
            desc=f"epoch {epoch}/{epochs}",
            unit="img",
            leave=False,
            disable=None,  # tqdm's rule: off when the stream is not a terminal
            file=stream,
            dynamic_ncols=True,
        )
        self.start, self.seen = time.perf_counter(), 0

    def update(self, samples, loss):
        """``samples`` more done; ``loss`` is the running mean so far."""
        if self.bar is None:
            return
        self.seen += samples
        rate = self.seen / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(loss=f"{loss:.4f}", rate=f"{rate:.0f} img/s", refresh=False)
        self.bar.update(samples)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def require_matplotlib(script):
    """Exit with one line if ``--plot`` was given and matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit(f'{script} --plot needs matplotlib: pip install "firefly-dl[examples]"')


def plot_curves(path, history, title):
    """Write ``history`` (``{"train loss": [...], "held-out loss": [...], "train accuracy":
    [...], "held-out accuracy": [...]}``, one value per epoch) as two panels, losses and
    accuracies against the epoch, to the image file ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (losses, accuracies) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    for name, values in history.items():
        axes = losses if name.endswith("loss") else accuracies
        axes.plot(range(1, len(values) + 1), values, label=name, marker=".")
    losses.set(xlabel="epoch", ylabel="cross-entropy", yscale="log")
    accuracies.set(xlabel="epoch", ylabel="accuracy (%)")
    for axes in (losses, accuracies):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
