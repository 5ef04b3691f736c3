"""What every tool the agents call has in common: a typed result and error wording.

Tools never raise into the AOI loop: a failed call is an observation the model
can reason about (``403 Forbidden: the observer identity may not list
secrets``), not an exception that ends the investigation.
"""

from agents.tools.errors import describe_error
from agents.tools.result import ToolResult, ToolStatus

__all__ = ["ToolResult", "ToolStatus", "describe_error"]
