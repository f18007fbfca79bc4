"""`python jobs/<name>.py`, as `ray job submit --working-dir . -- python jobs/train.py` runs it, puts jobs/ on
sys.path, not the checkout that holds the resmm, pipelines and jobs packages. The checkout goes first, so that
the submitted code runs rather than an installed copy. Under the `resmm` command this module is not imported."""
import sys
from pathlib import Path

CHECKOUT = str(Path(__file__).resolve().parent.parent)
if CHECKOUT not in sys.path:
    sys.path.insert(0, CHECKOUT)
