"""``python -m adasam_glue.experiments reproduce-all|select-lr ...`` (:func:`adasam_glue.experiments.plan.main`)."""

import sys

from adasam_glue.experiments.plan import main

sys.exit(main())
