"""Where state is kept: files today, behind small interfaces."""
