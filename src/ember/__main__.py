"""`python -m ember ...`: the `ember` command (torchrun starts the processes of a distributed run this way)."""
import sys

from ember.cli import main

sys.exit(main())
