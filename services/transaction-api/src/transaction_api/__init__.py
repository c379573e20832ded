"""Transaction API of the loyalty platform."""
