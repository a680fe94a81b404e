import sys

from emohrnet_fast.cli import main

sys.exit(main())
