"""The live inventory (issue 15): registry notifications applied as they arrive, tag history, pulls.

- ``store``: the listener's durable journal of accepted events;
- ``apply``: an event's shape checked, a batch of events applied to the inventory in one commit;
- ``app``: the WSGI app for ``regdb listen`` (waitress) and the applier thread;
- ``history``: ``record_tag_history`` for every writer (listener, sync, removals), and its queries;
- ``status``: what ``regdb status`` reports.

Nothing is imported here: the sync imports ``history`` alone, and ``apply`` imports the sync.
"""
