"""User-facing errors: one line, naming the problem and the fix. The CLI turns them into exit code 2.

A message that advises an action names the Python API's arguments (`resume=True`); `cli` may give the same
advice in the command line's words (`--resume`), which the `genlab` command prints instead."""


class GenlabError(Exception):
    """A mistake in the user's input (data, config, paths, options). Printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, cli: str | None = None):
        super().__init__(message)
        self.cli = cli


class CapabilityError(GenlabError, AttributeError):
    """A model was asked for a capability (inpaint, log_prob, ...) its family does not have."""


class TrainingDiverged(GenlabError):
    """The loss became NaN/inf; the last good checkpoint is kept."""

    exit_code = 1


class Interrupted(GenlabError):
    """Training was stopped by SIGINT (Ctrl-C) or SIGTERM after saving a checkpoint; exit 128 + the signal."""

    def __init__(self, message: str, signum: int, cli: str | None = None):
        super().__init__(message, cli)
        self.exit_code = 128 + signum


class DataReadError(GenlabError):
    """A data file that cannot be used, found where it is first read (a streamed image, maybe in a DataLoader
    worker). A worker's error comes back to the main process as 'Caught DataReadError in DataLoader worker ...
    Original Traceback ... DataReadError: MESSAGE'; rebuilding it keeps the one-line MESSAGE."""

    def __init__(self, message: str):
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip().splitlines()[0]
        super().__init__(message)
