"""File manager plugin."""
