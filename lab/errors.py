"""Errors the lab reports to people: each says what failed and what to do next."""


class LabError(Exception):
    """A lab operation failed for a reason the user can act on."""


class LabNotRunningError(LabError):
    """No lab is up where one was expected."""


class LabAlreadyRunningError(LabError):
    """A second `lab up` found a running lab."""
