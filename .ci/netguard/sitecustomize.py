# On PYTHONPATH during tests only: every Python process (pytest, nbdev-test workers) refuses sockets beyond 127.0.0.1.
import os
if os.environ.get('GEE_POLYGONS_NO_NETWORK'):
    from gee_polygons.testing import block_sockets
    block_sockets()
