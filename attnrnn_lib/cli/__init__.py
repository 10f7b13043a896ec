"""Command-line tools with the names and flags of Magenta's README (thin wrappers over the library)."""
