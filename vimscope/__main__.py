import sys

from vimscope.cli.main import main

sys.exit(main())
