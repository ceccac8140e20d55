"""``python -m regdb``: the same CLI as the ``regdb`` console script."""

import sys

from regdb.entry import regdb

sys.exit(regdb())
