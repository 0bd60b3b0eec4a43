"""Lightning callbacks of our own; everything else comes from Lightning itself."""
