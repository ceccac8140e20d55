"""Cleaning a registry up: plan what to delete (``plan``), then carry the plan out (``execute``)."""
