"""skinray: restore the lighting, colour and sharpness of skin photographs, on Ray.

Importing this package has no side effects: no Ray start-up, no network, no environment edits.
"""

__version__ = "0.1.0"
