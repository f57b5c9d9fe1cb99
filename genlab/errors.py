"""User-facing errors: one line, naming the problem and the fix. The CLI turns them into exit code 2."""


class GenlabError(Exception):
    """A mistake in the user's input (data, config, paths, options). Printed as one line, exit code 2."""

    exit_code = 2


class CapabilityError(GenlabError, AttributeError):
    """A model was asked for a capability (inpaint, log_prob, ...) its family does not have."""


class TrainingDiverged(GenlabError):
    """The loss became NaN/inf; the last good checkpoint is kept."""

    exit_code = 1
