"""The report's figures (matplotlib, no display needed):

- ``routing_heatmap.png``: mean routing weight of each expert for each accent, one panel per HDMoLE layer
  (from ``routing_<set>.json`` written by ``hdmole.bin.routing_stats``);
- ``thresholds.png``: each layer's threshold and mean number of active experts over training
  (from the ``routing`` entries of ``train_log.jsonl``);
- ``training_curves.png``: training loss of every system over steps;
- ``threshold_curve_<system>.png``: the dev loss with tau forced to a grid of values, per layer, the learned
  tau marked (from ``threshold_curve.json`` written by ``hdmole.bin.threshold_curve``).

Labels may be Chinese (a corpus' own accent names, e.g. 西南官话): matplotlib's default font has no CJK
glyphs, so each plot looks for an installed font that has the labels' missing characters and adds it as a
fallback (Debian's fonts-wqy-microhei, which tools/install.sh installs, or fonts-noto-cjk). Without one the
plot is still drawn, with one warning naming the characters and the package to install.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.ft2font import FT2Font  # noqa: E402

log = logging.getLogger("hdmole.report")
# Fonts with CJK glyphs, tried first (any other installed font that has the glyphs also serves).
CJK_FONTS = ("WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC",
             "Droid Sans Fallback", "Microsoft YaHei", "SimHei", "PingFang SC", "Arial Unicode MS")
FONT_PACKAGE = "fonts-wqy-microhei"


@functools.lru_cache(maxsize=None)
def _charmap(path: str) -> frozenset[int]:
    return frozenset(FT2Font(path).get_charmap())


def _covers(path: str, codes: set[int]) -> bool:
    try:
        return codes <= _charmap(path)
    except (OSError, RuntimeError, ValueError):  # a font file FreeType cannot read
        return False


def _candidate_fonts() -> list[tuple[str, str]]:
    """(path, family) of the installed fonts, the known CJK ones first: matplotlib's font list, then the
    system's font files it has not listed (its list is cached, so a font installed since is found here)."""
    # A .ttc file holds several faces (WenQuanYi Micro Hei and its Mono): every (file, family) pair counts.
    known = {(font.fname, font.name) for font in font_manager.fontManager.ttflist}
    listed = {path for path, _ in known}
    for path in font_manager.findSystemFonts():
        if path not in listed:
            try:
                known.add((path, font_manager.FontProperties(fname=path).get_name()))
            except (OSError, RuntimeError, ValueError):
                continue
    rank = {name: index for index, name in enumerate(CJK_FONTS)}
    return sorted(known, key=lambda item: (rank.get(item[1], len(rank)), item[1], item[0]))


def fallback_font(texts: Iterable[str]) -> tuple[str | None, set[str]]:
    """``(family, missing)``: a font family with the glyphs of ``texts`` that the default font lacks (None
    when it lacks none), and the characters no installed font has (empty when one was found)."""
    default = font_manager.findfont(font_manager.FontProperties(family=plt.rcParams["font.family"]))
    chars = {ch for text in texts for ch in text if not ch.isspace()}
    codes = {ord(ch) for ch in chars} - _charmap(default)
    if not codes:
        return None, set()
    for path, family in _candidate_fonts():
        if _covers(path, codes):
            if family not in {font.name for font in font_manager.fontManager.ttflist}:
                font_manager.fontManager.addfont(path)
            return family, set()
    return None, {chr(code) for code in codes}


@contextlib.contextmanager
def glyphs_for(texts: Iterable[str]):
    """The plot drawn inside has the glyphs of ``texts``: a fallback font when the default lacks some, or,
    without one installed, one warning instead of matplotlib's per-glyph ones (the plot is still drawn)."""
    texts = list(texts)
    family, missing = fallback_font(texts)
    params = {}
    if family is not None:
        default = font_manager.FontProperties(
            fname=font_manager.findfont(font_manager.FontProperties(family=plt.rcParams["font.family"]))).get_name()
        params["font.family"] = [default, family]  # matplotlib falls back glyph by glyph
    with plt.rc_context(params), warnings.catch_warnings():
        if missing:
            shown = "".join(sorted(missing)[:10])
            log.warning("no installed font has glyphs for %d character(s) of the plot labels (%s), drawn as boxes; "
                        "install a CJK font: apt-get install %s (tools/install.sh does) or fonts-noto-cjk",
                        len(missing), shown, FONT_PACKAGE)
            warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")
        yield


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def routing_heatmap(stats: dict, accents: list[str], out: Path, title: str) -> bool:
    """``stats``: {layer: {"by_domain": {accent: {"mean_weight_per_expert": [...]}}}}."""
    layers = [name for name, entry in stats.items() if entry.get("by_domain")]
    if not layers:
        return False
    with glyphs_for([*accents, *layers, title]):
        _draw_routing_heatmap(stats, layers, accents, out, title)
    return True


def _draw_routing_heatmap(stats: dict, layers: list[str], accents: list[str], out: Path, title: str) -> None:
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 0.5 * len(accents) + 2.2), squeeze=False)
    for index, (ax, layer) in enumerate(zip(axes[0], layers)):
        by_domain = stats[layer]["by_domain"]
        rows = [a for a in accents if a in by_domain]
        matrix = np.array([by_domain[a]["mean_weight_per_expert"] for a in rows])
        image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_yticks(range(len(rows)), rows if index == 0 else [""] * len(rows))  # accent names once, left
        ax.set_xticks(range(matrix.shape[1]), [f"e{i}" for i in range(matrix.shape[1])])
        ax.set_xlabel("expert")
        ax.set_title(layer, fontsize=9)
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.5 else "k")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="mean routing weight")
    fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def threshold_curves(train_log: list[dict], out: Path, title: str) -> bool:
    entries = [e for e in train_log if "routing" in e]
    if not entries:
        return False
    layers = sorted({name for e in entries for name in e["routing"]})
    with glyphs_for([*layers, title]):
        _draw_threshold_curves(entries, layers, out, title)
    return True


def _draw_threshold_curves(entries: list[dict], layers: list[str], out: Path, title: str) -> None:
    fig, (ax_tau, ax_active) = plt.subplots(1, 2, figsize=(10, 3.6))
    for layer in layers:
        steps = [e["step"] for e in entries if layer in e["routing"]]
        taus = [e["routing"][layer].get("threshold") for e in entries if layer in e["routing"]]
        active = [e["routing"][layer]["mean_active_experts"] for e in entries if layer in e["routing"]]
        if any(t is not None for t in taus):
            ax_tau.plot(steps, [np.nan if t is None else t for t in taus], label=layer)
        ax_active.plot(steps, active, label=layer)
    ax_tau.set(xlabel="step", ylabel="threshold tau", title="dynamic threshold per layer")
    ax_active.set(xlabel="step", ylabel="experts", title="mean active experts per token")
    for ax in (ax_tau, ax_active):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:  # a top-k or dense mixture logs its active experts but has no threshold to draw
            ax.text(0.5, 0.5, "no dynamic threshold", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def training_curves(logs: dict[str, list[dict]], out: Path) -> bool:
    logs = {name: [e for e in entries if "loss" in e] for name, entries in logs.items()}
    logs = {name: entries for name, entries in logs.items() if entries}
    if not logs:
        return False
    with glyphs_for(logs):
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, entries in logs.items():
            ax.plot([e["step"] for e in entries], [e["loss"] for e in entries], label=name)
        ax.set(xlabel="step", ylabel="training loss", title="training curves")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.savefig(out, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return True


def threshold_operating_curve(curve: dict, out: Path, title: str) -> bool:
    """One panel per layer: the dev loss with that layer's tau forced (the others learned) and with every
    layer's forced, the learned tau and its loss marked; the mean active experts of the layer on a second axis."""
    layers = curve.get("layers") or []
    if not layers:
        return False
    fig, axes = plt.subplots(1, len(layers), figsize=(4.6 * len(layers), 3.6), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        own = curve["per_layer"][layer]
        ax.plot([p["tau"] for p in own], [p["loss"] for p in own], "o-", label="this layer forced")
        ax.plot([p["tau"] for p in curve["all_layers"]], [p["loss"] for p in curve["all_layers"]], "s--", color="grey",
                label="all layers forced")
        learned = curve["learned"]
        taus = learned["thresholds"][layer]
        for tau in taus if isinstance(taus, list) else [taus]:
            ax.axvline(tau, color="red", alpha=0.6)
            ax.plot([tau], [learned["loss"]], "r*", markersize=12)
        ax.plot([], [], "r*", label="learned tau")
        ax.set(xlabel="tau", ylabel="dev ASR loss", title=layer)
        ax.grid(alpha=0.3)
        active = ax.twinx()
        active.plot([p["tau"] for p in own], [p["mean_active_experts"] for p in own], ":", color="green")
        active.set_ylabel("mean active experts (this layer)", color="green")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def source_gate_curve(points: list[dict], out: Path, title: str) -> bool:
    """The source gate's operating curve: the change of the source-domain CER against the average accent CER, one
    point per gate of the grid, the dev-chosen one marked."""
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    ax.plot([p["accent"] for p in points], [p["std_change"] for p in points], "o-")
    for p in points:
        ax.annotate(p["gate"], (p["accent"], p["std_change"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if p["chosen"]:
            ax.plot([p["accent"]], [p["std_change"]], "r*", markersize=14, label="chosen on dev")
    ax.axhline(0.0, color="grey", alpha=0.5)
    ax.set(xlabel="avg accent CER (%)", ylabel="source CER minus the base model's (points)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True
