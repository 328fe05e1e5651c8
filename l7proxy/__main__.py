import sys

from l7proxy.cli import main

sys.exit(main(sys.argv[1:]))
