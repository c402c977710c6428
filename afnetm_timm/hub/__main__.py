"""``python -m afnetm_timm.hub export|push ...``: the ``afnetm hub`` commands."""
import sys

from .cli import main

sys.exit(main())
