"""``python -m benchmarks``: see ``benchmarks/run.py``; ``python -m benchmarks transfer``:
see ``benchmarks/transfer.py``."""

import sys

if sys.argv[1:2] == ["transfer"]:
    from benchmarks.transfer import main as transfer_main

    raise SystemExit(transfer_main(sys.argv[2:]))

from benchmarks.run import main

raise SystemExit(main())
