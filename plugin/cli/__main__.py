import sys

from litellm_failover.cli import main

sys.exit(main())
