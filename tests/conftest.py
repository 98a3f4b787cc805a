"Shared pytest setup: sockets beyond 127.0.0.1 are refused, and `emulator` is a running Earth Engine emulator."
import pytest
from gee_polygons.testing import block_sockets

block_sockets()  # always: no test may reach anything but 127.0.0.1

@pytest.fixture
def emulator():
    "A running `Emulator` (10 tasks run at once, 10 s tasks, the clock moving 5 s per request), the real client connected."
    from gee_polygons.emulator import Emulator
    with Emulator(max_running=10, task_seconds=10, auto_advance=5) as emu:
        yield emu.connect()
