"""Process exit codes, named so scripts and schedulers can tell failures apart."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: an unexpected internal error (a bug): nothing else fits
    INTERNAL_ERROR = 1
    #: bad command line or configuration: nothing was processed
    CONFIG_ERROR = 2
    #: the run finished, but at least one (episode, market) unit failed
    UNITS_FAILED = 3
    #: stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it); finished units are in the manifest
    INTERRUPTED = 130
    #: `locpipe trace`: no watermark found
    NOT_FOUND = 1
