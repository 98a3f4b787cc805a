"Tests cannot reach the network: every socket beyond 127.0.0.1 is refused, in this process and in the CI's children."
import os, socket, subprocess, sys
import pytest
from gee_polygons.testing import NetworkBlockedError

def test_outside_connections_are_refused():
    with pytest.raises(NetworkBlockedError): socket.create_connection(('8.8.8.8', 443), timeout=1)
    with pytest.raises(NetworkBlockedError): socket.getaddrinfo('earthengine.googleapis.com', 443)

def test_loopback_still_works():
    srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)
    try: socket.create_connection(srv.getsockname(), timeout=1).close()
    finally: srv.close()

@pytest.mark.skipif(not os.environ.get('GEE_POLYGONS_NO_NETWORK'), reason='only under .ci/run, which installs the sitecustomize guard')
def test_child_processes_are_guarded_too():
    code = "import socket\ntry: socket.create_connection(('1.1.1.1', 80), timeout=1)\nexcept OSError as e: print(type(e).__name__)"
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout.strip() == 'NetworkBlockedError'
