"""``python -m benchmarks``: see ``benchmarks/run.py``; ``python -m benchmarks transfer``:
see ``benchmarks/transfer.py``; ``python -m benchmarks scale``: see ``benchmarks/scale.py``;
``python -m benchmarks server-counts``: see ``benchmarks/server_counts.py``;
``python -m benchmarks save-floor``: see ``benchmarks/save_floor.py``."""

import sys

if sys.argv[1:2] == ["transfer"]:
    from benchmarks.transfer import main as transfer_main

    raise SystemExit(transfer_main(sys.argv[2:]))

if sys.argv[1:2] == ["scale"]:
    from benchmarks.scale import main as scale

    raise SystemExit(scale(sys.argv[2:]))

if sys.argv[1:2] == ["save-floor"]:
    from benchmarks.save_floor import main as save_floor

    raise SystemExit(save_floor(sys.argv[2:]))

if sys.argv[1:2] == ["server-counts"]:
    from benchmarks.server_counts import main as server_counts

    raise SystemExit(server_counts(sys.argv[2:]))

from benchmarks.run import main

raise SystemExit(main())
