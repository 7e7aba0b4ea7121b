"""A real S3-compatible server on 127.0.0.1 for tests: moto's server mode (``moto[server]==5.2.5``).

Started as a child process by the fixture and stopped (by PID) at the end; the bucket is created
through pyarrow itself (``allow_bucket_creation``). Dummy credentials; traffic stays on loopback.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from helpers import free_port

__all__ = ["S3Server", "start_s3_server"]


@dataclass
class S3Server:
    endpoint: str          # http://127.0.0.1:PORT
    bucket: str
    process: subprocess.Popen

    def uri(self, prefix: str) -> str:
        """``s3://bucket/prefix`` with the endpoint in the query, as pyarrow takes it."""
        return f"s3://{self.bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http"

    def env(self) -> dict[str, str]:
        """Credentials/region every process talking to the server needs."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_s3_server(bucket: str = "lsh-test", timeout_s: float = 30.0) -> S3Server:
    """Start ``python -m moto.server`` on a free loopback port and create ``bucket``."""
    import pyarrow.fs as pafs

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = S3Server(f"http://127.0.0.1:{port}", bucket, proc)
    os.environ.update(server.env())
    deadline = time.time() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                server.stop()
                raise RuntimeError(f"moto server did not start on port {port}")
            time.sleep(0.2)
    fs = pafs.S3FileSystem(endpoint_override=server.endpoint, scheme="http", region="us-east-1",
                           allow_bucket_creation=True)
    fs.create_dir(bucket)
    return server
