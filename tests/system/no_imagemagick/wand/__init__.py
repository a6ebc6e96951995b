# Stands for Wand on a machine without ImageMagick: importing it fails as the real one does there.
raise ImportError("MagickWand shared library not found.")
