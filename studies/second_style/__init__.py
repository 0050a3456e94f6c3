"""A second, differently styled video-caption collection (glyph sprites on busy 16:9 scenes)."""
