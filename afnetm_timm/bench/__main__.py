"""``python -m afnetm_timm.bench``: the same as ``afnetm bench``."""
import sys

from .cli import main

sys.exit(main())
