"""``python -m automl_core.cli``: the ``automl`` command."""

import sys

from automl_core.cli.main import main

sys.exit(main())
