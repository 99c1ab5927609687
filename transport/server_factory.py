"""The ASGI app factory uvicorn imports in each worker process."""

import gc

from sessiongraph.transport.app import create_app

# Allocations between two young-generation collections. A nested page makes some 100,000
# short-lived objects: at Python's default of 700 that is a hundred collections a request.
# Measured (bench/RESULTS.md): 10,000 serves the nested page as fast as 20,000 or 50,000 do,
# and leaves the p99 of a small query where 700 has it (larger thresholds raised it 2-3x).
GC_YOUNG_THRESHOLD = 10_000


def app():
    application = create_app()
    # What start-up made (modules, the schema, the app) lives as long as the process: moved
    # out of the collector's sight, so full collections scan only what requests made.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return application
