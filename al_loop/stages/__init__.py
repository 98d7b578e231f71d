"""Campaign stages."""
