"""Annotating videos: import, pre-label, review and correct tracks, export (services + the tab)."""
