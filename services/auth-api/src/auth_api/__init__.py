"""Auth API of the loyalty platform."""
