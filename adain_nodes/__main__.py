"""Entry point of ``python -m adain_nodes``."""
import sys

from .cli import main

sys.exit(main())
