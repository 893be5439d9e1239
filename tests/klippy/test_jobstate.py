"""Job state changes from one print_stats update, including prints that ran between updates."""

from __future__ import annotations

import pytest

from moontwist.klippy.jobstate import job_transitions

DONE_X = {"state": "complete", "filename": "x.gcode", "total_duration": 2.0, "print_duration": 1.5}
RUNNING_X = {"state": "printing", "filename": "x.gcode", "total_duration": 30.0, "print_duration": 20.0}
STANDBY = {"state": "standby", "filename": "", "total_duration": 0.0, "print_duration": 0.0}


@pytest.mark.parametrize(
    ("prev", "changed", "expected", "steps"),
    [
        # plain changes
        (STANDBY, {"state": "printing", "filename": "x.gcode"}, False, [("standby", "printing")]),
        (RUNNING_X, {"state": "paused"}, False, [("printing", "paused")]),
        ({**RUNNING_X, "state": "paused"}, {"state": "printing", "total_duration": 31.0}, False,
         [("paused", "printing")]),
        (RUNNING_X, {"state": "complete", "total_duration": 40.0}, False, [("printing", "complete")]),
        (RUNNING_X, {"state": "standby", "filename": ""}, False, [("printing", "standby")]),
        (RUNNING_X, {"total_duration": 31.0, "print_duration": 21.0}, False, []),
        (DONE_X, {"state": "standby", "filename": ""}, False, [("complete", "standby")]),
        (STANDBY, {"filename": "x.gcode"}, True, []),  # selected, not started yet
        (DONE_X, {"message": "x"}, False, []),
        # a whole print between two updates
        (STANDBY, {"state": "complete", "filename": "x.gcode", "total_duration": 0.01}, False,
         [("standby", "printing"), ("printing", "complete")]),
        (STANDBY, {"state": "error", "filename": "x.gcode", "message": "Must home axis first"}, False,
         [("standby", "printing"), ("printing", "error")]),
        ({**DONE_X, "state": "cancelled"}, {"state": "complete", "total_duration": 0.3}, False,
         [("cancelled", "printing"), ("printing", "complete")]),
        (DONE_X, {"total_duration": 2.5}, False, [("complete", "printing"), ("printing", "complete")]),
        (DONE_X, {"filename": "y.gcode"}, False, [("complete", "printing"), ("printing", "complete")]),
        (DONE_X, {"info": {"total_layer": None, "current_layer": None}}, True,
         [("complete", "printing"), ("printing", "complete")]),
        # a print that replaced a running one
        (RUNNING_X, {"filename": "y.gcode", "total_duration": 1.0}, False,
         [("printing", "standby"), ("standby", "printing")]),
        (RUNNING_X, {"total_duration": 0.5}, False, [("printing", "standby"), ("standby", "printing")]),
        (RUNNING_X, {"state": "complete", "filename": "y.gcode", "total_duration": 0.2}, False,
         [("printing", "standby"), ("standby", "printing"), ("printing", "complete")]),
    ],
)
def test_job_transitions(prev, changed, expected, steps):
    assert job_transitions(prev, changed, expected) == steps
