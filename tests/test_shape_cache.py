"""The torch-cuda runner's per-shape policy (engine/backends/shape_cache.py): a one-shot call runs
eagerly (no capture to pay for), the second run of a shape captures once and replays, later runs
replay; the cache keeps the most recently USED shapes, so a recurring shape always replays."""
import pytest

from engine.backends.shape_cache import CAPTURE, EAGER, REPLAY, ShapeCache


def _run(cache, key):
    """What the runner does for one call of shape ``key`` (the graph is 'captured' on CAPTURE)."""
    e = cache.entry(key, lambda: {"buffers": key})
    action = cache.action(e)
    if action == CAPTURE:
        e["graph"] = f"graph{key}"
    return action


def test_first_run_eager_second_captures_then_replays():
    cache = ShapeCache()
    assert [_run(cache, (2, 8, 8)) for _ in range(4)] == [EAGER, CAPTURE, REPLAY, REPLAY]


def test_graphs_off_always_eager():
    cache = ShapeCache(graphs=False)
    assert {_run(cache, (2, 8, 8)) for _ in range(3)} == {EAGER}


def test_recurring_shape_is_never_evicted_by_others():
    """A shape used between each new one stays captured (LRU); insertion order (the old FIFO)
    would have evicted it on the fifth new shape."""
    cache = ShapeCache(capacity=4)
    hot = (2, 100, 100)
    _run(cache, hot), _run(cache, hot)
    for i in range(10):
        _run(cache, (2, i + 1, 8))
        assert _run(cache, hot) == REPLAY, i
    assert len(cache) == 4 and hot in cache and (2, 1, 8) not in cache


def test_evicted_shape_starts_over():
    cache = ShapeCache(capacity=1)
    assert [_run(cache, (2, 8, 8)), _run(cache, (2, 8, 8))] == [EAGER, CAPTURE]
    _run(cache, (2, 9, 9))
    assert _run(cache, (2, 8, 8)) == EAGER
    with pytest.raises(ValueError):
        ShapeCache(capacity=0)
