"""The small core every layer may import: settings per concern, the error hierarchy, CRS/frames,
delivery reading. It imports no other onemap package."""
