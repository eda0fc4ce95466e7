"""tests/reliability is not a package: make its harness importable as `harness`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
