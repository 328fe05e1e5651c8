import sys

from l7proxy.tools.cli import main

sys.exit(main(sys.argv[1:]))
