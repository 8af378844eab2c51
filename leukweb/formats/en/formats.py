from leukweb.formats.en_GB.formats import *  # noqa: F403  the same formats for plain "en"
