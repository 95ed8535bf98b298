"""What the bootstrap tells the supervisor about a failed start, read back through the
supervisor's own parser."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaunch._inside.bootstrap import Channel, report_failure
from relaunch.run.ipc import Message, MessageReader


class Supervisor:
    """The supervisor's end of the pipe: read in a thread (the report includes every
    loaded module, more than a pipe holds), parsed by the supervisor's own parser."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.channel = Channel(write_fd, -1)
        self.read_fd = read_fd
        self.received: list[Message] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        reader = MessageReader()
        while chunk := os.read(self.read_fd, 65536):
            self.received.extend(reader.feed(chunk))
        os.close(self.read_fd)

    def messages(self) -> list[Message]:
        os.close(self.channel.write_fd)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        return self.received


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    yield Supervisor()


def test_a_missing_module_has_every_place_it_would_be_found_watched(
    supervisor: Supervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", [str(tmp_path / "a"), str(tmp_path / "gone"), str(tmp_path)])
    (tmp_path / "a").mkdir()
    try:
        import nosuchmod_for_bootstrap_test  # type: ignore[import-not-found]  # noqa: F401
    except ModuleNotFoundError as exc:
        report_failure(supervisor.channel, exc)
    watched = {
        p for m in supervisor.messages() if m.kind == "mods" for _n, p, t in m.modules if t == -1
    }
    name = "nosuchmod_for_bootstrap_test"
    assert watched == {
        str(tmp_path / "a" / f"{name}.py"),
        str(tmp_path / "a" / name / "__init__.py"),
        str(tmp_path / f"{name}.py"),
        str(tmp_path / name / "__init__.py"),
    }  # not in a folder that does not exist


def test_a_missing_submodule_is_looked_for_in_its_package(
    supervisor: Supervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pkg_for_bootstrap_test").mkdir()
    (tmp_path / "pkg_for_bootstrap_test" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        try:
            import pkg_for_bootstrap_test.views  # type: ignore[import-not-found]  # noqa: F401
        except ModuleNotFoundError as exc:
            # Raised from another error, as relaunch serve's APP mistake is.
            try:
                raise LookupError("APP 'pkg_for_bootstrap_test.views:app'") from exc
            except LookupError as outer:
                report_failure(supervisor.channel, outer, brief=True)
    finally:
        sys.modules.pop("pkg_for_bootstrap_test", None)
    received = supervisor.messages()
    watched = {p for m in received if m.kind == "mods" for _n, p, t in m.modules if t == -1}
    package = tmp_path / "pkg_for_bootstrap_test"
    assert watched == {str(package / "views.py"), str(package / "views" / "__init__.py")}
    # Brief: the sentence, and no traceback.
    assert not [m for m in received if m.kind == "tb"]
    (error,) = [m for m in received if m.kind == "error"]
    assert error.text == "APP 'pkg_for_bootstrap_test.views:app'"
