"""Errors the lab reports to people: each says what failed and what to do next."""


class LabError(Exception):
    """A lab operation failed for a reason the user can act on."""


class LabNotRunning(LabError):
    """No lab is up where one was expected."""


class LabAlreadyRunning(LabError):
    """A second `lab up` found a running lab."""
