"""What can end an association, as exceptions a user can catch and print in one line."""

from __future__ import annotations

from ..ul.constants import describe_abort, describe_reject


class AssociationError(Exception):
    """The association could not be established or ended abnormally."""


class ConnectionFailed(AssociationError):
    """The TCP (or TLS) connection could not be opened."""


class AssociationRejected(AssociationError):
    def __init__(self, result: int, source: int, reason: int) -> None:
        self.result, self.source, self.reason = result, source, reason
        super().__init__(f"association rejected: {describe_reject(result, source, reason)}")


class AssociationAborted(AssociationError):
    def __init__(self, source: int | None = None, reason: int | None = None, detail: str = "") -> None:
        self.source, self.reason = source, reason
        if source is None:
            text = detail or "association aborted"
        else:
            text = describe_abort(source, reason or 0) + (f": {detail}" if detail else "")
        super().__init__(text)


class AssociationTimeout(AssociationError, TimeoutError):
    """A deadline passed: ACSE (association establishment/release) or DIMSE (waiting for a response)."""


class NoPresentationContext(AssociationError):
    """No accepted presentation context for what the caller wants to send."""


class OperationFailed(Exception):
    """A DIMSE operation ended with a failure status (the association itself is fine)."""

    def __init__(self, response) -> None:
        from ..dimse.status import describe

        self.response = response
        self.status = response.status
        comment = getattr(response, "error_comment", None)
        super().__init__(describe(response.status) + (f" ({comment})" if comment else ""))
