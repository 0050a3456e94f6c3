"""Clause-segment alignment: the halves of a clip against the clauses of its caption (README.md)."""
