"""library_output.routed: third-party bars, warnings, log records and stray
stderr lines become records of cinescale_post.libraries, counted, and
everything is restored afterwards (also when the block raises)."""

import logging
import sys
import warnings

import pytest
from tqdm import tqdm

from cinescale_post.orchestrator.third_party_output import routed


def test_bars_warnings_records_and_lines_are_routed_and_counted(capsys, caplog):
    lib = logging.getLogger("transformers")
    lib.addHandler(logging.StreamHandler(sys.stderr))  # configured already, as transformers does
    try:
        with caplog.at_level(logging.INFO, logger="cinescale_post.libraries"), routed() as counts:
            for _ in tqdm(range(7), desc="Loading pipeline components..."):
                pass
            warnings.warn("float16 cannot run on cpu", UserWarning)
            lib.warning("Loading weights slowly")
            logging.getLogger("torch.nn").warning("a torch note")  # no handler of its own
            print("a stray line\rdrawn over", file=sys.stderr)
        captured = capsys.readouterr()
        assert captured.err == "" and captured.out == ""  # no second bar, no library text
        assert counts.to_dict() == {"progress_bars": 1, "warnings": 3, "messages": 2}
        texts = [r.getMessage() for r in caplog.records if r.name == "cinescale_post.libraries"]
        assert "Loading pipeline components... (7 steps)" in texts
        assert any("UserWarning: float16 cannot run on cpu" in t for t in texts)
        assert "transformers: Loading weights slowly" in texts and "torch.nn: a torch note" in texts
        assert "a stray line" in texts and "drawn over" in texts
        assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "cinescale_post.libraries")
        # Outside the block the library speaks for itself again.
        lib.warning("after")
        assert "after" in capsys.readouterr().err
    finally:
        lib.handlers.clear()


def test_everything_is_restored_when_loading_raises(capsys):
    show, init, err = warnings.showwarning, tqdm.__init__, sys.stderr
    handlers = {n: list(logging.getLogger(n).handlers) for n in ("torch", "diffusers")}
    with pytest.raises(RuntimeError), routed():
        raise RuntimeError("weights are broken")
    assert warnings.showwarning is show and tqdm.__init__ is init and sys.stderr is err
    assert {n: list(logging.getLogger(n).handlers) for n in handlers} == handlers
    for _ in tqdm(range(2), desc="ours", file=sys.stderr):
        pass
    assert "ours" in capsys.readouterr().err  # bars work again
