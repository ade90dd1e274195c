"""Exceptions that carry a message a beamline user can act on.

Every refusal of input (a file, a parameter) raises a subclass of :class:`SpeckleError`. The
message says what is wrong and what to do about it; the command line prints it as one line.
"""


class SpeckleError(Exception):
    """Base class of every error speckle raises on purpose."""


class InvalidInputError(SpeckleError, ValueError):
    """A file or a parameter was refused: wrong format, damaged, unsafe or inconsistent."""


class UnsupportedFormatError(InvalidInputError):
    """The file's content is not a format speckle reads."""


class DatasetNotFoundError(InvalidInputError, FileNotFoundError):
    """The path names no file, directory, or file matching a pattern."""


class UnsafeFileError(InvalidInputError):
    """The file asks for something speckle refuses to do (external links, huge allocations)."""


class AnalysisError(SpeckleError, RuntimeError):
    """An analysis could not run on otherwise valid input (too few frames, empty bins...)."""


class Cancelled(AnalysisError):
    """The user cancelled the analysis (raised where the work checks ``cancel()``)."""
