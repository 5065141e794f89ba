"""`python -m training train ...` (also what `torchrun -m training` and `start_run` launch)."""

from training.cli import main

raise SystemExit(main())
