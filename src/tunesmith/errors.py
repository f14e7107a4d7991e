"""The base of every error that is the user's to fix (bad config, bad data, missing model): the CLI prints these
as one clear message and exits 2, instead of a traceback."""


class TunesmithError(Exception):
    pass


USER_ERRORS = (TunesmithError,)
