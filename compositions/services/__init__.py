"""Writes: every change to compositions, accounts and training data, in one module per domain.

Callers import from the domain's module (`from compositions.services.composing import
composition_request`). Each service takes keyword-only arguments and runs in a transaction;
the background tasks' own writes (claim, progress, finish, fail) are services with status guards.
"""
