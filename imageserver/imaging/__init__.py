"""Images in, images out: format facts, header checks, the cost of a render, and the render itself.

The only layer that loads ImageMagick (through magick/), so only workers and commands import it."""
