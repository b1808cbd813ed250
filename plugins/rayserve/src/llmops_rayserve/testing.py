"""Test helpers shared by this plugin's tests and others' (the console's, the demo's): a
local Ray with Serve for a test session. Tiny real models come from
:func:`llmops.testing.models.tiny_causal_lm`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmops_rayserve.cluster import RayConfig, RaySession, forget_session, session_for


@contextmanager
def local_ray(num_cpus: int = 4, start_timeout: float = 180.0) -> Iterator[RaySession]:
    """A local Ray with Serve (dashboard off, proxy on 127.0.0.1 at a free port) in a
    short temp dir, shut down and removed at the end. Starting takes 10-35 s on 2 cores."""
    root = Path(tempfile.mkdtemp(prefix="llmops-rs-"))
    config = RayConfig(address=None, data_dir=root, num_cpus=num_cpus)
    session = session_for(config)
    try:
        session.ensure(wait=start_timeout)
        yield session
    finally:
        session.shutdown()
        forget_session(config)
        shutil.rmtree(root, ignore_errors=True)
