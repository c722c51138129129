"""hdmole.report.plots with Chinese labels (a corpus' own accent names): drawn with a CJK font when one is
installed (tools/install.sh installs fonts-wqy-microhei), and without one still drawn, with one warning."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from matplotlib import image

from hdmole.report import plots

ACCENTS = ["普通话", "西南官话", "江淮官话"]
STATS = {"projector.linear1": {"by_domain": {a: {"mean_weight_per_expert": [0.1 * i, 0.5, 0.9 - 0.1 * i]}
                                             for i, a in enumerate(ACCENTS)}}}


def draw(path, caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="hdmole.report"):
        warnings.simplefilter("always")
        assert plots.routing_heatmap(STATS, ACCENTS, path, "hdmole: 路由权重")
        assert plots.training_curves({"西南": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]},
                                     path.with_name("curves.png"))
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_chinese_labels_are_drawn_with_a_cjk_font_or_one_warning(tmp_path, caplog):
    family, missing = plots.fallback_font(ACCENTS)
    glyph_warnings = draw(tmp_path / "routing.png", caplog)
    assert not glyph_warnings, glyph_warnings[:2]  # never one warning per missing glyph
    assert image.imread(tmp_path / "routing.png").shape[2] == 4
    if family is not None:  # a font with the glyphs is installed (tools/install.sh): it is used, silently
        assert not missing and "no installed font" not in caplog.text
    else:
        assert set("普通话西南官江淮") <= missing and "apt-get install fonts-wqy-microhei" in caplog.text


def test_without_a_cjk_font_the_plot_is_still_drawn_with_one_warning(tmp_path, caplog, monkeypatch):
    """No font found (the search sees none): each plot is drawn, with one warning naming the characters and
    the package. Where a font is installed, the plot drawn with it differs from this one: glyphs, not boxes."""
    found, _ = plots.fallback_font(ACCENTS)
    assert not draw(tmp_path / "with.png", caplog)
    monkeypatch.setattr(plots, "_candidate_fonts", lambda: [])
    caplog.clear()
    assert not draw(tmp_path / "without.png", caplog)
    lines = [r.getMessage() for r in caplog.records if "no installed font" in r.getMessage()]
    assert len(lines) == 2 and "普" in lines[0] and "fonts-wqy-microhei" in lines[0]  # one per plot
    with_font, without = image.imread(tmp_path / "with.png"), image.imread(tmp_path / "without.png")
    assert (with_font.shape == without.shape and np.array_equal(with_font, without)) == (found is None)


def test_threshold_curves_of_a_mixture_without_thresholds_draw_without_warnings(tmp_path):
    """A top-k or dense mixture (mole_top2, hdmole_dense) logs active experts but no tau: its curves are drawn
    with the tau panel saying so, and matplotlib warns of no empty legend (it did, once per such system)."""
    log = [{"step": s, "routing": {"projector.linear1": {"mean_active_experts": 2.0}}} for s in (25, 50)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.threshold_curves(log, tmp_path / "curves.png", "mole_top2")
    assert image.imread(tmp_path / "curves.png").shape[2] == 4
