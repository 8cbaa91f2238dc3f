"""The exceptions haul raises."""

from __future__ import annotations


class HaulError(Exception):
    """A job could not run (its state or reports could not be written, …)."""


class ConfigError(HaulError, ValueError):
    """The arguments do not make a job: a bad template, selector, rate, or
    arguments that do not fit together."""


class InputError(HaulError):
    """An input could not be read: a missing file, a table without the
    column asked for, a format that cannot be told."""
