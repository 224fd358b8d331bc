"""Fixtures of the end-to-end tests: the whole ACP stack (collector, demo IdP, demo MCP server,
Envoy with the ACP filter) on free ports, so the tests run beside a running `make demo`.

One stack per test module (`stack`); a module whose tests need another configuration shares
one built with `make_module_stack`; a test that disturbs the stack (stopping the collector, a
broken configuration) builds its own with `make_stack`. Run `make build` first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

E2E_DIR = Path(__file__).resolve().parent
ROOT = E2E_DIR.parent.parent
for path in (ROOT / "examples", E2E_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from stack import Stack  # noqa: E402


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The default demo stack, shared by the tests of one module."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    with Stack(tmp_path_factory.mktemp(name)) as s:
        yield s


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """`make_stack(**Stack kwargs)`: an unstarted Stack of this test, stopped at its end."""
    stacks: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        s = Stack(tmp_path / f"stack{len(stacks)}", **kwargs)
        stacks.append(s)
        return s

    yield make
    for s in stacks:
        s.stop()


@pytest.fixture(scope="module")
def make_module_stack(tmp_path_factory: pytest.TempPathFactory,
                      request: pytest.FixtureRequest) -> Iterator[Callable[..., Stack]]:
    """`make_module_stack(**Stack kwargs)`: a started Stack shared by the tests of one module
    (wrap it in a module-scoped fixture), stopped after the module."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    stacks: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        s = Stack(tmp_path_factory.mktemp(name), **kwargs)
        stacks.append(s)
        return s.start()

    yield make
    for s in stacks:
        s.stop()
