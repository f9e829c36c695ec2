"""``python -m tvm.pyrovm.images customize``: the mmdebstrap hook (:mod:`.customise`)."""

import sys

from tvm.pyrovm.images.customise import main

sys.exit(main())
