"""Progress bars: drawn on a terminal when switched on, silent otherwise."""

import io
import sys

import pytest

from recloop.models import ALS, BPR, EASE, ItemKNN
from recloop.progress import progress_bar, progress_enabled, show_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def attach_terminal(monkeypatch) -> Terminal:
    """stderr as a terminal; set in the test itself (pytest restores its own capture
    stream between fixture setup and the test call)."""
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


FITS = [
    (lambda: ALS(factors=4, iterations=3), "fit als"),
    (lambda: BPR(factors=4, epochs=3), "fit bpr"),
    (lambda: EASE(l2=10.0), "fit ease"),
    (lambda: ItemKNN(k=5), "fit itemknn"),
]


@pytest.mark.parametrize(("make", "label"), FITS)
def test_long_fits_draw_a_bar_on_a_terminal_when_switched_on(synthetic, monkeypatch, make, label):
    terminal = attach_terminal(monkeypatch)
    with show_progress():
        make().fit(synthetic.interactions)
    drawn = terminal.getvalue()
    assert label in drawn and "\r" in drawn


@pytest.mark.parametrize(("make", "label"), FITS)
def test_fits_are_silent_by_default_and_when_switched_off(synthetic, monkeypatch, make, label):
    terminal = attach_terminal(monkeypatch)
    make().fit(synthetic.interactions)
    with show_progress(False):
        make().fit(synthetic.interactions)
    assert terminal.getvalue() == ""


def test_no_bars_when_stderr_is_not_a_terminal(synthetic, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with show_progress():
        assert not progress_enabled()
        EASE(l2=10.0).fit(synthetic.interactions)
    assert stream.getvalue() == ""


def test_the_switch_is_scoped_to_the_block(monkeypatch):
    attach_terminal(monkeypatch)
    with show_progress():
        assert progress_enabled()
        with show_progress(False):
            assert not progress_enabled()
        assert progress_enabled()
    assert not progress_enabled()
    assert progress_bar(range(3), desc="x").disable


def test_bpr_bar_shows_the_mean_loss(synthetic, monkeypatch):
    terminal = attach_terminal(monkeypatch)
    with show_progress():
        BPR(factors=4, epochs=2).fit(synthetic.interactions)
    assert "loss=" in terminal.getvalue()


def test_cli_quiet_switches_bars_off_and_default_on(tmp_path, monkeypatch):
    terminal = attach_terminal(monkeypatch)
    from recloop.cli import main

    config = tmp_path / "exp.toml"
    config.write_text('name = "p"\n[data]\ndataset = "synthetic"\n[split]\nmethod = "leave-one-out"\n'
                      '[evaluation]\nk = [10]\n[model]\nname = "itemknn"\nk = 5\n')
    assert main(["evaluate", str(config), "--quiet"]) == 0
    assert "fit itemknn" not in terminal.getvalue()
    assert main(["evaluate", str(config)]) == 0
    assert "fit itemknn" in terminal.getvalue()
