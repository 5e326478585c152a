"""read_ahead: items in order from a helper thread, errors at the item they replaced, early stops."""

import contextlib
import threading

import pytest

from bioprune.read_ahead import read_ahead


def test_items_come_in_order_from_another_thread():
    threads = set()

    def items():
        for i in range(50):
            threads.add(threading.get_ident())
            yield i

    assert list(read_ahead(items(), depth=3)) == list(range(50))
    assert threading.get_ident() not in threads


def test_an_error_is_raised_at_the_item_it_replaced():
    def items():
        yield from (1, 2)
        raise ValueError("bad third item")

    got = []
    with pytest.raises(ValueError, match="bad third item"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_reads_at_most_depth_items_ahead_and_returns():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    with contextlib.closing(read_ahead(items(), depth=2)) as ahead:
        assert next(ahead) == 0
    assert len(produced) <= 3  # the one used and at most two ahead
