"""The error type of the grader tooling."""


class GraderError(Exception):
    """A problem explained for the instructor: the command line prints it and exits with status 1."""

    @classmethod
    def from_nbgrader(cls, action, result):
        """The error for a failed ``result`` of an ``NbGraderAPI`` call, with nbgrader's log."""
        return cls(f"nbgrader could not {action}:\n{result.get('log', '')}{result.get('error', '')}")
