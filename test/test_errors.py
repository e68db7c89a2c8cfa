"""Failure reasons: a Reason enum that behaves as its published word, errors carrying
(reason, detail)."""
import json
import pickle

import pytest

from coop_ros.errors import (BoxOutsideImageError, CoopError, EstimationError, InputError,
                             Reason, reason_text)
from coop_ros.pipeline import PoseResult


def test_reason_is_its_word():
    words = [r.value for r in Reason]
    assert len(set(words)) == len(words) and all(w.isidentifier() and w.islower() for w in words)
    r = Reason.STALE_INPUT
    assert str(r) == f"{r}" == "stale_input" and f"{r:>12}" == " stale_input"
    assert r == "stale_input" and hash(r) == hash("stale_input")
    assert r in {"stale_input": 1} and "stale_input" in {r: 1}
    assert json.dumps({"why": r}) == '{"why": "stale_input"}'
    assert Reason("pnp_failed") is Reason.PNP_FAILED


def test_errors_carry_reason_and_detail():
    e = EstimationError(Reason.PNP_FAILED, "template 3: no pose")
    assert (e.reason, e.detail, str(e)) == (Reason.PNP_FAILED, "template 3: no pose",
                                             "pnp_failed: template 3: no pose")
    back = pickle.loads(pickle.dumps(e))      # through a process pool
    assert type(back) is EstimationError and (back.reason, back.detail) == (e.reason, e.detail)
    plain = InputError("K must be (3, 3)")
    assert plain.reason is None and str(plain) == plain.detail == "K must be (3, 3)"
    assert isinstance(BoxOutsideImageError("x"), ValueError)
    assert isinstance(e, RuntimeError) and isinstance(e, CoopError)
    assert reason_text(None, "d") == "d" and reason_text(Reason.LOW_SCORE, "d") == "low_score: d"
    with pytest.raises(TypeError, match="reason, detail"):
        EstimationError(Reason.PNP_FAILED)


def test_results_carry_the_code_and_the_text():
    r = PoseResult.failed(3, Reason.LOW_SCORE, "best score 0.100 < min_score 0.2")
    assert r.status == "failed" and r.reason_code is Reason.LOW_SCORE
    assert r.reason == "low_score: best score 0.100 < min_score 0.2" and r.T_cam_obj is None
    s = PoseResult.skipped("can", Reason.MAX_DETECTIONS, "ranked 5 of 5")
    assert s.status == "skipped" and s.reason_code is Reason.MAX_DETECTIONS
    assert PoseResult(obj_id=1, status="ok").reason_code is None
