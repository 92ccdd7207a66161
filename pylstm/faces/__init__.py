"""Faces: thin adapters that give an Engine's results the shape of the caller's framework."""
