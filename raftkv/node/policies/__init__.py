"""Decisions the runtime leaves to a policy of its own, beside the driver.

:mod:`.autopilot`: when the leader promotes a healthy nonvoter to voter
(raft-autopilot's StablePromoter); :mod:`.gcpolicy`: when Python's cycle
collector may run, so that its pauses do not stall heartbeats.
"""
