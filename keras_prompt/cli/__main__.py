import sys

from keras_prompt.cli import main

sys.exit(main())
