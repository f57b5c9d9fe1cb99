"""`python -m genlab ...` (also what torchrun launches: torchrun --nproc_per_node=2 -m genlab train ...)."""

from .cli import main

main()
