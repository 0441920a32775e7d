import sys

from calcimg.cli import main

sys.exit(main())
