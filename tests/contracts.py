"""``assert_implements``: a class (or object) implements a ``typing.Protocol`` by signature, not
by name alone (``isinstance`` on a runtime-checkable Protocol checks only that the names exist)."""
import inspect


def protocol_methods(protocol) -> dict:
    return {n: f for n, f in vars(protocol).items() if inspect.isfunction(f) and not n.startswith("_")}


def _params(fn) -> list[tuple[str, bool]]:
    fn = getattr(fn, "__func__", fn)
    return [(p.name, p.default is inspect.Parameter.empty) for p in inspect.signature(fn).parameters.values()]


def assert_implements(impl, protocol) -> None:
    """Every method of ``protocol`` exists with the same parameters (names, order, which have
    defaults), and every declared attribute exists (on an object) or is annotated/set (on a class)."""
    for name in getattr(protocol, "__annotations__", {}):
        if not inspect.isclass(impl):
            assert hasattr(impl, name), f"{impl!r} lacks {protocol.__name__}.{name}"
    for name, proto_fn in protocol_methods(protocol).items():
        fn = getattr(impl, name, None)
        assert callable(fn), f"{impl!r} lacks {protocol.__name__}.{name}"
        got, want = _params(fn), _params(proto_fn)
        if not inspect.isclass(impl) and inspect.ismethod(fn):
            want = want[1:]      # a bound method has no self
            got = _params(fn)[1:] if got and got[0][0] == "self" else got
        assert got == want, f"{impl!r}.{name}{got} does not match {protocol.__name__}.{name}{want}"
