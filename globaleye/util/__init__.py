"""Helpers of everyone: protocol time, URL building, the per-source key, optional extras."""
