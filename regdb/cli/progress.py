"""The sync's progress bar on a terminal: tags resolved, with the total, rate and ETA once they are known.

Drawn with tqdm (a well-kept, dependency-free progress library), which throttles redraws itself (at most
every ``REDRAW_SECONDS``), so calling ``update`` after every tag costs a clock read, not a write. The CLI imports
this module only when stderr is a terminal and the log level is not debug: piped output and debug logs get
nothing extra (tests/test_progress.py drives it through a pseudo-terminal).
"""

from __future__ import annotations

from typing import TextIO

from tqdm import tqdm

from regdb.inventory.sync import SyncCounts

# tqdm's own default: often enough to look alive, rare enough to cost nothing next to the requests.
REDRAW_SECONDS = 0.1


class SyncProgress:
    """``watch`` for ``Inventory.sync``: one line, e.g. ``syncing host: 2/9 repositories  1200/4950 tags
    |####      | [00:03<00:09, 410 tags/s]``; without a total yet, the count and the rate only."""

    def __init__(self, registry: str, stream: TextIO):
        self.registry = registry
        self._shown: tuple[int, int | None] = (0, None)
        self.bar = tqdm(
            total=None, unit=" tags", file=stream, mininterval=REDRAW_SECONDS, dynamic_ncols=True, leave=False,
            desc=self._describe(SyncCounts()),
        )

    def _describe(self, counts: SyncCounts) -> str:
        total = "?" if counts.repos_total is None else str(counts.repos_total)
        return f"syncing {self.registry}: {counts.repos_done}/{total} repositories"

    def __call__(self, counts: SyncCounts) -> None:
        bar = self.bar
        total = counts.tags_total
        if total is not None and bar.total != total:
            bar.total = total  # the catalog and every tag list are in: a bar with an ETA from now on
        shown = (counts.repos_done, counts.repos_total)
        if shown != self._shown:
            self._shown = shown
            bar.set_description_str(self._describe(counts), refresh=False)
        bar.update(counts.tags_done - bar.n)

    def close(self) -> None:
        """Clear the line (leave=False): the summary the command prints next stands alone."""
        self.bar.close()
