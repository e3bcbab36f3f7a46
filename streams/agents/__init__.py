"""Faust agents: thin loops around plain handlers that are tested without a broker."""
