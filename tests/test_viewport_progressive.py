"""The neural viewport's progressive frames (blender_addon/viewport/progressive.py), no Blender: a coarse
frame right after a change, the full one once the view has been still, stale frames never standing for the
current view, failures not asked again at once."""

from __future__ import annotations

from concurrent.futures import Future

from blender_addon.client.errors import ServiceUnreachable
from blender_addon.viewport.progressive import COARSE, FULL, Progressive


class Service:
    """Stands in for the worker: remembers the asked frames, finishes them when told."""

    def __init__(self):
        self.asked: list[tuple[str, Future]] = []

    def submit(self, level: str) -> Future:
        future = Future()
        self.asked.append((level, future))
        return future

    def finish(self, frame="frame", error=None):
        level, future = self.asked[-1]
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result((frame, level))
        return level


def test_coarse_at_once_then_full_once_still():
    service, view = Service(), Progressive(still_seconds=0.3)
    assert view.step("a", 0.0, service.submit) is None and [lvl for lvl, _ in service.asked] == [COARSE]
    assert view.step("a", 0.05, service.submit) is None  # in flight: nothing more asked
    service.finish("a1")
    assert view.step("a", 0.1, service.submit) == 0.3  # coarse shown; come back when the view has been still
    assert view.current and view.shown == ("a1", COARSE) and len(service.asked) == 1
    assert view.step("a", 0.3, service.submit) is None and service.asked[-1][0] == FULL
    service.finish("a2")
    assert view.step("a", 0.9, service.submit) is None and view.shown == ("a2", FULL)
    assert view.step("a", 5.0, service.submit) is None and len(service.asked) == 2  # done: nothing more


def test_a_change_asks_a_coarse_frame_and_a_stale_one_is_only_drawn_meanwhile():
    service, view = Service(), Progressive(still_seconds=0.3)
    view.step("a", 0.0, service.submit)
    view.step("b", 0.02, service.submit)  # the view moved while a's frame is traced
    service.finish("for a")
    view.step("b", 0.05, service.submit)
    assert view.shown == ("for a", COARSE) and not view.current  # drawn until b's arrives, not b's frame
    assert [lvl for lvl, _ in service.asked] == [COARSE, COARSE]  # b's coarse asked at once
    service.finish("for b")
    assert view.step("b", 0.1, service.submit) == 0.02 + 0.3 and view.current
    view.step("c", 0.2, service.submit)  # moving on before b's full frame: c is coarse again
    assert service.asked[-1][0] == COARSE and len(service.asked) == 3


def test_moving_again_restarts_the_wait_for_the_full_frame():
    service, view = Service(), Progressive(still_seconds=0.3)
    view.step("a", 0.0, service.submit)
    service.finish()
    assert view.step("a", 0.1, service.submit) == 0.3
    view.step("b", 0.2, service.submit)
    service.finish()
    assert view.step("b", 0.25, service.submit) == 0.5  # still since 0.2


def test_a_failure_is_shown_and_not_asked_again_before_the_retry_time():
    service, view = Service(), Progressive(retry_seconds=2.0)
    view.step("a", 0.0, service.submit)
    service.finish(error=ServiceUnreachable(0, "no running service found"))
    assert view.step("a", 0.1, service.submit) == 2.1
    assert view.error == "service: no running service found" and len(service.asked) == 1
    assert view.step("a", 2.2, service.submit) is None and len(service.asked) == 2  # retried
    service.finish("ok")
    view.step("a", 2.3, service.submit)
    assert view.error == "" and view.current


def test_a_failure_for_an_old_view_is_no_error_for_the_new_one():
    service, view = Service(), Progressive()
    view.step("a", 0.0, service.submit)
    view.step("b", 0.1, service.submit)
    service.finish(error=RuntimeError("boom"))
    view.step("b", 0.2, service.submit)
    assert view.error == "" and service.asked[-1][0] == COARSE and len(service.asked) == 2
