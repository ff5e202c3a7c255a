"""optax_cdr: CDR (Xia et al., ICLR 2021) as a composable Optax transformation."""

from optax_cdr._cdr import cdr
from optax_cdr._cdr import CDRState
from optax_cdr._cdr import critical_mask
from optax_cdr._cdr import default_mask
from optax_cdr._keep_count import keep_count
from optax_cdr._selection import kth_largest
from optax_cdr._selection import KthLargest

__version__ = "0.1.0"

__all__ = (
    "cdr",
    "CDRState",
    "critical_mask",
    "default_mask",
    "keep_count",
    "kth_largest",
    "KthLargest",
)
