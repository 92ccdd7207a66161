"""``pylstm bench --plot``: the speed-up ratios of a benchmark record, one panel per section.

Each result entry that carries ``speedup_vs_<peer>`` (peer time / pylstm time, > 1: pylstm
faster) is drawn as a horizontal bar per peer, starting at 1.0 (a vertical line), on a log
scale, labelled with its configuration and its value. Sections are the entries' ``kind``
(``grid``, ``precision``, ``stream`` and any other kind a record holds); a section with many
rows of several cells is drawn as one panel per cell. Panels are laid out in one or two
columns, bars of the same thickness everywhere. Needs matplotlib (the ``bench`` extra); it is
imported only here, and only when plotting.
"""

from __future__ import annotations

import math

#: Colours of the known peers; others take the next colour of :data:`_SPARE_COLOURS`.
PEER_COLOURS = {"onnxruntime": "tab:orange", "torch": "tab:green"}
PEER_LABELS = {"onnxruntime": "ONNX Runtime", "torch": "PyTorch"}
_SPARE_COLOURS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
#: Short panel titles of the known sections; any other kind is titled by its name.
SECTION_TITLES = {
    "grid": "Whole sequences (one call on [T, B, I])",
    "precision": "Reduced-precision weights (pylstm at each precision, peers at fp32)",
    "stream": "Streaming (one time step per call from Python, state carried)",
}
_SPLIT_ROWS = 16  # a section with more rows than this is drawn as one panel per cell
_PANEL_EXTRA_UNITS = 4.2  # height of a panel's title and axis, in rows


def require_matplotlib():
    """The ``matplotlib.figure`` module; RuntimeError with the install hint when missing."""
    try:
        import matplotlib.figure
    except ImportError as exc:
        raise RuntimeError(
            "--plot needs matplotlib: pip install matplotlib (or pip install 'pylstm[bench]')"
        ) from exc
    return matplotlib.figure


def peers_of(rows: list) -> list:
    """The peers that ``rows`` hold ratios against (``speedup_vs_<peer>`` keys), known peers
    first."""
    found = {k[len("speedup_vs_") :] for r in rows for k in r if k.startswith("speedup_vs_")}
    known = [p for p in PEER_COLOURS if p in found]
    return known + sorted(found - set(known))


def _has_ratio(entry: dict) -> bool:
    return any(
        k.startswith("speedup_vs_") and isinstance(v, (int, float)) and v > 0
        for k, v in entry.items()
    )


def row_label(entry: dict) -> str:
    """The configuration's name, with its precision where the entry has one."""
    label = str(entry.get("name") or entry.get("config") or "?")
    precision = entry.get("precision")
    if precision and str(precision) not in label:
        label += f" {precision}"
    return label


def ratio_panels(record: dict) -> list:
    """What :func:`plot_record` draws: a list of ``(section, title, rows)``, one per panel, in
    the record's order. ``section`` is the entries' ``kind`` (``"grid"`` when absent); entries
    without any ratio are left out, and so are sections left empty."""
    sections: dict = {}
    for entry in record.get("results", []):
        if isinstance(entry, dict) and _has_ratio(entry):
            sections.setdefault(entry.get("kind", "grid"), []).append(entry)
    panels = []
    for kind, rows in sections.items():
        title = SECTION_TITLES.get(kind, kind.replace("_", " ").capitalize())
        cells = list(dict.fromkeys(str((r.get("config") or {}).get("cell", "")) for r in rows))
        if len(rows) > _SPLIT_ROWS and len(cells) > 1:
            for cell in cells:
                part = [r for r in rows if str((r.get("config") or {}).get("cell", "")) == cell]
                panels.append((kind, f"{title}: {cell.upper() or 'other'}", part))
        else:
            panels.append((kind, title, rows))
    return panels


def _geomean(values: list) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _panel_summary(rows: list, peers: list) -> list:
    parts = []
    for peer in peers:
        ratios = [r[f"speedup_vs_{peer}"] for r in rows if r.get(f"speedup_vs_{peer}")]
        if ratios:
            faster = sum(x > 1 for x in ratios)
            parts.append(
                f"vs {PEER_LABELS.get(peer, peer)}: faster on {faster} of {len(ratios)}, "
                f"geomean {_geomean(ratios):.2f}x"
            )
    return parts


def _layout(panels: list) -> tuple:
    """``(columns, placement, height)``: placement[i] = (column, first unit, units) of panel i,
    in rows of bars; panels go to the currently shorter column, in order. One column when
    everything is short."""
    units = [len(rows) * _row_units(rows) + _PANEL_EXTRA_UNITS for _, _, rows in panels]
    columns = 1 if sum(units) <= 26 or len(panels) == 1 else 2
    heights = [0.0] * columns
    placement = []
    for u in units:
        col = min(range(columns), key=lambda c: heights[c])
        placement.append((col, heights[col], u))
        heights[col] += u
    return columns, placement, max(heights)


def _row_units(rows: list) -> float:
    return max(1.0, 0.6 * len(peers_of(rows)))


def _x_range(rows: list, peers: list) -> tuple:
    values = [r[f"speedup_vs_{p}"] for r in rows for p in peers if r.get(f"speedup_vs_{p}")]
    return min(0.8, min(values) / 1.15), max(2.0, max(values) * 1.45)


def _draw_panel(ax, title: str, rows: list, colours: dict) -> None:
    from matplotlib import ticker

    peers = [p for p in colours if any(r.get(f"speedup_vs_{p}") for r in rows)]
    x_range = _x_range(rows, peers)
    n = len(rows)
    thickness = 0.84 / max(1, len(peers))
    for k, peer in enumerate(peers):
        for i, r in enumerate(rows):
            value = r.get(f"speedup_vs_{peer}")
            if not value:
                continue
            y = i - 0.42 + thickness * (k + 0.5)
            ax.barh(y, value - 1.0, left=1.0, height=thickness * 0.9, color=colours[peer])
            ax.text(
                value * (1.02 if value >= 1 else 0.98),
                y,
                f"{value:.2f}",
                va="center",
                ha="left" if value >= 1 else "right",
                fontsize=6.5,
                color="black" if value >= 1 else "firebrick",
            )
    ax.axvline(1.0, color="black", linewidth=1.0)
    ax.axvspan(x_range[0], 1.0, color="firebrick", alpha=0.07, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xlim(*x_range)
    ax.xaxis.set_major_locator(ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_yticks(range(n), [row_label(r) for r in rows], fontsize=7)
    ax.set_ylim(n - 0.5, -0.5)  # the record's first row on top
    for i in range(1, n):  # a faint rule between configurations
        ax.axhline(i - 0.5, color="0.85", linewidth=0.5)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    lines = _panel_summary(rows, peers)
    ax.set_title(title, fontsize=8.5, loc="left", fontweight="bold", pad=6 + 10 * len(lines))
    ax.text(0, 1.01, "\n".join(lines), transform=ax.transAxes, fontsize=7.5, va="bottom")


def plot_record(record: dict, path: str) -> list:
    """Draw the speed-up ratios of ``record`` (as written to JSON) into the PNG file ``path``.

    One panel per section of the record (see :func:`ratio_panels`), one bar per peer and
    configuration: peer time / pylstm time, starting at the line at 1.0 (right of it: pylstm
    faster), log scale.

    Parameters
    ----------
    record : dict
        A record from ``pylstm bench`` (:func:`pylstm.bench.report.load_record`): its
        ``results`` entries with ``kind``, ``name`` and ``speedup_vs_<peer>``; ``machine``,
        ``threads``, ``date`` and ``device`` for the figure's title.
    path : str
        The PNG file to write.

    Returns
    -------
    list of str
        The sections drawn (the entries' ``kind``), in the record's order.

    Raises
    ------
    RuntimeError
        matplotlib is not installed.
    ValueError
        The record has no entries with ratios to draw.
    """
    figure_module = require_matplotlib()
    panels = ratio_panels(record)
    if not panels:
        raise ValueError("nothing to plot: the record has no results with speed-up ratios")
    all_rows = [r for _, _, rows in panels for r in rows]
    peers = peers_of(all_rows)
    spare = iter(_SPARE_COLOURS * (1 + len(peers) // len(_SPARE_COLOURS)))
    colours = {p: PEER_COLOURS.get(p) or next(spare) for p in peers}

    columns, placement, total_units = _layout(panels)
    unit_in, plot_in, gap_in, top_in, bottom_in = 0.19, 4.8, 0.35, 0.8, 0.45
    label_in = [0.3] * columns  # each column's room for its configuration labels
    for (_, _, rows), (col, _, _) in zip(panels, placement):
        longest = max(len(row_label(r)) for r in rows)
        label_in[col] = max(label_in[col], 0.25 + 0.056 * longest)
    width = sum(label_in) + columns * (plot_in + gap_in)
    height = top_in + total_units * unit_in + bottom_in
    fig = figure_module.Figure(figsize=(width, height))
    for (_, title, rows), (col, first, units) in zip(panels, placement):
        left = sum(label_in[: col + 1]) + col * (plot_in + gap_in)
        top = top_in + (first + _PANEL_EXTRA_UNITS - 1.0) * unit_in
        axes_in = (units - _PANEL_EXTRA_UNITS) * unit_in
        rect = (left / width, 1 - (top + axes_in) / height, plot_in / width, axes_in / height)
        _draw_panel(fig.add_axes(rect), title, rows, colours)

    from matplotlib.patches import Patch

    handles = [
        Patch(color=colours[p], label=f"{PEER_LABELS.get(p, p)} time / pylstm time") for p in peers
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    machine = record.get("machine", {})
    where = machine.get("gpu") or machine.get("cpu", "?")
    fig.suptitle(
        f"pylstm speed-up: peer time / pylstm time (> 1: pylstm faster), log scale\n"
        f"{record.get('device', 'cpu')}: {where}, {record.get('threads', '?')} thread(s), "
        f"{record.get('date', '')}",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    return list(dict.fromkeys(kind for kind, _, _ in panels))
