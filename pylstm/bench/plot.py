"""``pylstm bench --plot``: latency against batch size from a benchmark record.

One subplot per (cell, hidden size) of the single-layer grid: milliseconds per call (log scale)
against the batch size (log scale), one line per engine, solid for pylstm and dashed for the
peers. Needs matplotlib (the ``bench`` extra); it is imported only here, and only when plotting.
"""

from __future__ import annotations

ENGINE_STYLES = {
    "pylstm": {"color": "tab:blue", "linestyle": "-", "label": "pylstm"},
    "onnxruntime": {"color": "tab:orange", "linestyle": "--", "label": "ONNX Runtime"},
    "torch": {"color": "tab:green", "linestyle": "--", "label": "PyTorch"},
}


def require_matplotlib():
    """The ``matplotlib.figure`` module; RuntimeError with the install hint when missing."""
    try:
        import matplotlib.figure
    except ImportError as exc:
        raise RuntimeError(
            "--plot needs matplotlib: pip install matplotlib (or pip install 'pylstm[bench]')"
        ) from exc
    return matplotlib.figure


def plottable_rows(record: dict) -> list:
    """Grid entries of single-layer, one-direction points (what the plot draws)."""
    return [
        r
        for r in record["results"]
        if r.get("kind", "grid") == "grid"
        and r["config"].get("layers", 1) == 1
        and not r["config"].get("bidirectional", False)
    ]


def plot_record(record: dict, path: str) -> str:
    """Draw the latency plot of ``record`` (as written to JSON) into the PNG file ``path``.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    RuntimeError
        matplotlib is not installed.
    ValueError
        The record has no single-layer grid entries to draw.
    """
    figure_module = require_matplotlib()
    from matplotlib import ticker

    rows = plottable_rows(record)
    if not rows:
        raise ValueError("nothing to plot: the record has no single-layer grid results")
    order = {"lstm": 0, "gru": 1, "rnn": 2}
    cells = sorted({r["config"]["cell"] for r in rows}, key=lambda c: order.get(c, 3))
    hiddens = sorted({r["config"]["hidden_size"] for r in rows})
    fig = figure_module.Figure(figsize=(3.4 * len(hiddens), 2.9 * len(cells) + 0.8))
    axes = fig.subplots(len(cells), len(hiddens), squeeze=False)
    for i, cell in enumerate(cells):
        for j, hidden in enumerate(hiddens):
            ax = axes[i][j]
            points = sorted(
                (
                    r
                    for r in rows
                    if r["config"]["cell"] == cell and r["config"]["hidden_size"] == hidden
                ),
                key=lambda r: r["config"]["batch"],
            )
            if not points:
                ax.set_visible(False)
                continue
            for engine, style in ENGINE_STYLES.items():
                xy = [
                    (r["config"]["batch"], r[f"{engine}_ms"]) for r in points if f"{engine}_ms" in r
                ]
                if xy:
                    ax.plot(*zip(*xy), marker="o", markersize=3, **style)
            ax.set_xscale("log", base=2)
            batches = [r["config"]["batch"] for r in points]
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.xaxis.set_minor_locator(ticker.NullLocator())
            ax.set_yscale("log")
            steps = sorted({r["config"]["steps"] for r in points})
            ax.set_title(f"{cell.upper()} I=H={hidden} T={'/'.join(map(str, steps))}", fontsize=9)
            ax.set_xlabel("batch size B", fontsize=8)
            ax.set_ylabel("ms per call", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = next(
        (ax.get_legend_handles_labels() for ax in axes.flat if ax.get_legend_handles_labels()[0]),
        ([], []),
    )
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    machine = record.get("machine", {})
    fig.suptitle(
        f"latency per call, 1 layer: {machine.get('cpu', '?')}, "
        f"{record.get('threads', '?')} thread(s), {record.get('date', '')}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=110)
    return path
