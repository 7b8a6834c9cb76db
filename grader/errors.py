"""The error type of the grader tooling."""


class GraderError(Exception):
    """A problem explained for the instructor: the command line prints it and exits with status 1."""

    @classmethod
    def from_nbgrader(cls, action, result):
        """The error for a failed ``result`` of an ``NbGraderAPI`` call.

        A refusal :mod:`grader.refusals` knows becomes one sentence with what to do; anything else
        keeps nbgrader's log.
        """
        from grader.refusals import explain

        log = f"{result.get('log', '')}{result.get('error', '')}"
        sentence = explain(log)
        if sentence:
            return cls(f"could not {action}: {sentence}")
        return cls(f"nbgrader could not {action}:\n{log}")
