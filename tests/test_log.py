import logging

from caveat.log import Progress


def test_progress_line_has_rate_and_eta(caplog):
    log = logging.getLogger("caveat.test_progress")
    log.propagate = True
    p = Progress(log, "samples", total=12, every_s=0.0)
    p.t0 -= 30.0  # 30 s elapsed
    with caplog.at_level(logging.INFO, logger="caveat.test_progress"):
        p.update(3)
    line = caplog.records[-1].getMessage()
    assert "3/12 samples (25.0%)" in line and "0.1 samples/s" in line and "ETA 1m30s" in line
