"""The public error tree. `api` maps each class to an HTTP status in exactly one place."""

from __future__ import annotations


class OpenRemixError(Exception):
    """Base of every error openremix raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(OpenRemixError):
    """A request parameter broke a rule of the contract (HTTP 400).

    `field` names the parameter (dotted for nested ones, e.g. `color_palette.members[0]`),
    `rule` says the rule in words. The message is `"<field>: <rule>"`.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule

    def renamed(self, names: dict[str, str]) -> InvalidRequest:
        """The same error under a wire's own name for the field (`prompt` -> `text_prompt`);
        the first part of a dotted or indexed field is what is renamed."""
        head = self.field
        for mark in (".", "["):
            head = head.split(mark, 1)[0]
        if head not in names:
            return self
        return InvalidRequest(names[head] + self.field[len(head):], self.rule)


class InputImageError(OpenRemixError):
    """An input image could not be read, fetched or decoded (400 at submit, FAILED in a worker)."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class UnsafeURL(InputImageError):
    """A URL points at an address we refuse to fetch (loopback, private, link-local, metadata)."""
