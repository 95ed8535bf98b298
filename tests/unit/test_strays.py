"""Which processes are strays (relaunch.run.strays): relaunch's children it does not keep."""

from __future__ import annotations

from relaunch.run.strays import known_pids, strays


def test_known_pids_are_every_childs_and_the_helpers_running() -> None:
    children = [{100, 101}, {200}]  # the current child's group, one stopping
    assert known_pids(children, [300, None, 0, 400]) == {100, 101, 200, 300, 400}
    assert known_pids([], []) == set()


def test_strays_are_the_children_of_relaunch_it_does_not_keep() -> None:
    known = known_pids([{100}], [300])
    assert strays({100, 300, 555, 556}, known) == {555, 556}
    assert strays({100, 300}, known) == set()
    assert strays(set(), known) == set()
