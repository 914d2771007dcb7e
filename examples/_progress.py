"""What the examples show besides their printed lines: a tqdm progress bar per epoch (or per
training iteration), and training curves written with matplotlib (``--plot FILE.png``). Both
come with the examples extra (``pip install "firefly-dl[examples]"``); without tqdm there is no
bar, and ``--plot`` without matplotlib stops before training with one line saying what to
install."""

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


class IterationBar:
    """A bar over a run's training iterations with the last loss, when tqdm is installed; else a
    line every 100 iterations. ``write`` prints a line above the bar (evaluations)."""

    def __init__(self, total, name, verbose):
        self.verbose, self.name, self.done = verbose, name, 0
        self.bar = None
        if verbose:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, desc=name, unit="step", dynamic_ncols=True)

    def update(self, loss):
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.bar.update()
        elif self.verbose and self.done % 100 == 0:
            print(f"{self.name} iter {self.done}: loss {loss:.4f}", flush=True)

    def write(self, line):
        if self.bar is not None:
            self.bar.write(line)
        elif self.verbose:
            print(line, flush=True)

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


def plot_loss_curves(path, runs):
    """Train and validation loss against the iteration, one pair of lines per run (``runs``:
    {name: (iteration, train loss, validation loss) triples}), written to the image ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for (name, evaluations), style in zip(runs.items(), ("-", "--")):
        iterations, train_losses, val_losses = zip(*evaluations)
        axes.plot(iterations, train_losses, style, color="tab:blue", label=f"{name} train")
        axes.plot(iterations, val_losses, style, color="tab:orange", label=f"{name} validation")
    axes.set_xlabel("iteration")
    axes.set_ylabel("cross-entropy (nats per character)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
