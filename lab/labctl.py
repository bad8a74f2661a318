"""labctl: bring the hpcnet lab up and down, look into it. See docs/lab.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
