"""GlobalEye: the Mobile Store-Watch platform."""

__version__ = "0.1.0"
