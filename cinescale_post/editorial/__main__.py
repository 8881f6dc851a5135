import sys

from cinescale_post.editorial.finalize import main

sys.exit(main())
