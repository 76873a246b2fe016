"""Genes: the strategy vocabulary families draw ops with, decoded from a compact genome.

Hypothesis stays the engine (database, replay, shrinking), but drawing a program through
hundreds of nested Hypothesis strategies costs milliseconds.  A family describes what it
draws with the few combinators below (named as in ``hypothesis.strategies``, so a
family's code reads the same); ``greenfuzz.strategies`` lets Hypothesis draw one genome
(short byte strings, drawn as the decoder needs them) and decodes it here, in plain
Python.  Every choice reads the
next bytes of the genome, and byte 0 is always the simplest choice (first branch,
smallest integer, end of a list), past its end every byte reads as 0: when Hypothesis
shrinks the genome towards fewer, smaller bytes the program shrinks towards fewer
greenlets, shorter scripts and the first branches.

``Gene.hyp()`` gives the same description as a Hypothesis strategy (the per-draw way,
kept for comparison and for tests that want to shrink an op on its own).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Generic, List, Optional, Sequence, Tuple, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")


class Genome:
    """A cursor over a genome's bytes; ``choice(n)`` is the decoder's one primitive.
    ``fetch``, when given, is asked for more bytes whenever the decoder reads past the
    end (Hypothesis draws the genome chunk by chunk, so that bytes no choice reads are
    never drawn and never shrunk); without it, or once it gives nothing, bytes past
    the end read as 0."""

    __slots__ = ("at", "data", "fetch", "size")

    def __init__(self, data: bytes, fetch: Optional[Callable[[], bytes]] = None) -> None:
        self.data = data
        self.at = 0
        self.size = len(data)
        self.fetch = fetch

    def byte(self) -> int:
        at = self.at
        self.at = at + 1
        if at < self.size:
            return self.data[at]
        if self.fetch is not None:
            more = self.fetch()
            if more:
                self.data += more
                self.size = len(self.data)
                return self.data[at]
            self.fetch = None
        return 0

    def choice(self, n: int) -> int:
        """An index below ``n`` (0 when the genome is used up); one byte when ``n`` fits
        in one, two otherwise."""
        if n <= 1:
            return 0
        if n <= 256:
            return self.byte() % n
        return ((self.byte() << 8) | self.byte()) % n

    def more(self, threshold: int) -> bool:
        """Whether a list goes on: a byte at or above ``threshold`` (0 ends it)."""
        return self.byte() >= threshold

    def draw(self, gene: Gene[T]) -> T:
        return gene.decode(self)


#: What a composite gets to draw with: ``draw(gene)``.
DrawFn = Callable[["Gene[Any]"], Any]


class Gene(Generic[T]):
    """A description of values to draw; ``decode`` reads one from a genome."""

    _hyp: Optional[st.SearchStrategy] = None

    def decode(self, g: Genome) -> T:
        raise NotImplementedError

    def _to_hyp(self) -> st.SearchStrategy:
        raise NotImplementedError

    def hyp(self) -> st.SearchStrategy[T]:
        """The same description as a Hypothesis strategy (built once)."""
        if self._hyp is None:
            self._hyp = self._to_hyp()
        return self._hyp

    def map(self, f: Callable[[T], Any]) -> Gene[Any]:
        return _Mapped(self, f)

    def flatmap(self, f: Callable[[T], Gene[Any]]) -> Gene[Any]:
        return _FlatMapped(self, f)


#: Families annotate with ``st.SearchStrategy[...]``: the same thing, here.
SearchStrategy = Gene


class _Just(Gene[T]):
    def __init__(self, value: T) -> None:
        self.value = value

    def decode(self, g: Genome) -> T:
        return self.value

    def _to_hyp(self) -> st.SearchStrategy:
        return st.just(self.value)


class _Sampled(Gene[T]):
    def __init__(self, elements: Sequence[T]) -> None:
        self.elements = tuple(elements)
        if not self.elements:
            raise ValueError("sampled_from needs at least one element")

    def decode(self, g: Genome) -> T:
        return self.elements[g.choice(len(self.elements))]

    def _to_hyp(self) -> st.SearchStrategy:
        return st.sampled_from(self.elements)


class _Integers(Gene[int]):
    def __init__(self, low: int, high: int) -> None:
        if high < low:
            raise ValueError(f"empty range {low}..{high}")
        self.low, self.high = low, high

    def decode(self, g: Genome) -> int:
        return self.low + g.choice(self.high - self.low + 1)

    def _to_hyp(self) -> st.SearchStrategy:
        return st.integers(min_value=self.low, max_value=self.high)


class _OneOf(Gene[Any]):
    def __init__(self, options: Sequence[Gene[Any]]) -> None:
        self.options = tuple(options)
        if not self.options:
            raise ValueError("one_of needs at least one option")

    def decode(self, g: Genome) -> Any:
        return self.options[g.choice(len(self.options))].decode(g)

    def _to_hyp(self) -> st.SearchStrategy:
        return st.one_of([o.hyp() for o in self.options])


class _Builds(Gene[Any]):
    def __init__(self, target: Callable[..., Any], args: Sequence[Gene[Any]],
                 kwargs: Dict[str, Gene[Any]]) -> None:
        self.target, self.args, self.kwargs = target, tuple(args), dict(kwargs)

    def decode(self, g: Genome) -> Any:
        args = [a.decode(g) for a in self.args]
        return self.target(*args, **{k: v.decode(g) for k, v in self.kwargs.items()})

    def _to_hyp(self) -> st.SearchStrategy:
        return st.builds(self.target, *[a.hyp() for a in self.args],
                         **{k: v.hyp() for k, v in self.kwargs.items()})


def _threshold(min_size: int, max_size: int) -> int:
    """The byte at which a list goes on, for the mean length Hypothesis's lists aim at
    (``min(max(2 min, min + 5), (min + max) / 2)`` elements)."""
    average = min(max(min_size * 2, min_size + 5), 0.5 * (min_size + max_size))
    return max(1, round(256 / (1 + max(average - min_size, 0.01))))


class _Lists(Gene[List[Any]]):
    def __init__(self, element: Gene[Any], min_size: int, max_size: int) -> None:
        self.element, self.min_size, self.max_size = element, min_size, max_size
        self.threshold = _threshold(min_size, max_size)

    def decode(self, g: Genome) -> List[Any]:
        out = [self.element.decode(g) for _ in range(self.min_size)]
        while len(out) < self.max_size and g.more(self.threshold):
            out.append(self.element.decode(g))
        return out

    def _to_hyp(self) -> st.SearchStrategy:
        return st.lists(self.element.hyp(), min_size=self.min_size, max_size=self.max_size)


class _Dictionaries(Gene[Dict[Any, Any]]):
    def __init__(self, keys: Gene[Any], values: Gene[Any], max_size: int) -> None:
        self.keys, self.values, self.max_size = keys, values, max_size
        self.threshold = _threshold(0, max_size)

    def decode(self, g: Genome) -> Dict[Any, Any]:
        out: Dict[Any, Any] = {}
        while len(out) < self.max_size and g.more(self.threshold):
            key = self.keys.decode(g)
            value = self.values.decode(g)
            out.setdefault(key, value)  # a repeated key adds nothing, as in Hypothesis
        return out

    def _to_hyp(self) -> st.SearchStrategy:
        return st.dictionaries(self.keys.hyp(), self.values.hyp(), max_size=self.max_size)


class _Tuples(Gene[Tuple[Any, ...]]):
    def __init__(self, parts: Sequence[Gene[Any]]) -> None:
        self.parts = tuple(parts)

    def decode(self, g: Genome) -> Tuple[Any, ...]:
        return tuple(p.decode(g) for p in self.parts)

    def _to_hyp(self) -> st.SearchStrategy:
        return st.tuples(*[p.hyp() for p in self.parts])


class _Mapped(Gene[Any]):
    def __init__(self, inner: Gene[Any], f: Callable[[Any], Any]) -> None:
        self.inner, self.f = inner, f

    def decode(self, g: Genome) -> Any:
        return self.f(self.inner.decode(g))

    def _to_hyp(self) -> st.SearchStrategy:
        return self.inner.hyp().map(self.f)


class _FlatMapped(Gene[Any]):
    def __init__(self, inner: Gene[Any], f: Callable[[Any], Gene[Any]]) -> None:
        self.inner, self.f = inner, f
        self.made: Dict[Any, Gene[Any]] = {}  # f's gene per value, built once

    def _gene(self, value: Any) -> Gene[Any]:
        try:
            return self.made[value]
        except (KeyError, TypeError):  # new, or unhashable
            gene = self.f(value)
            if getattr(value, "__hash__", None) is not None:
                self.made[value] = gene
            return gene

    def decode(self, g: Genome) -> Any:
        return self._gene(self.inner.decode(g)).decode(g)

    def _to_hyp(self) -> st.SearchStrategy:
        return self.inner.hyp().flatmap(lambda v: self._gene(v).hyp())


class _Composite(Gene[Any]):
    def __init__(self, fn: Callable[..., Any], args: Tuple[Any, ...],
                 kwargs: Dict[str, Any]) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def decode(self, g: Genome) -> Any:
        return self.fn(g.draw, *self.args, **self.kwargs)

    def _to_hyp(self) -> st.SearchStrategy:
        @st.composite
        def drawn(draw: st.DrawFn) -> Any:
            return self.fn(lambda gene: draw(gene.hyp()), *self.args, **self.kwargs)
        return drawn()


# -- the vocabulary, as in ``hypothesis.strategies`` ------------------------------------

def just(value: T) -> Gene[T]:
    return _Just(value)


def none() -> Gene[None]:
    return _NONE


_NONE: Gene[None] = _Just(None)


def booleans() -> Gene[bool]:
    return _BOOLEANS


_BOOLEANS: Gene[bool] = _Sampled((False, True))


def sampled_from(elements: Sequence[T]) -> Gene[T]:
    return _Sampled(elements)


def integers(min_value: int = 0, max_value: int = 255) -> Gene[int]:
    return _Integers(min_value, max_value)


def one_of(*options: Any) -> Gene[Any]:
    """``one_of(a, b)`` or ``one_of([a, b])``; a branch is picked uniformly."""
    if len(options) == 1 and not isinstance(options[0], Gene):
        options = tuple(options[0])
    return _OneOf(options)


def builds(target: Callable[..., T], *args: Gene[Any], **kwargs: Gene[Any]) -> Gene[T]:
    return _Builds(target, args, kwargs)


def lists(element: Gene[T], *, min_size: int = 0, max_size: int = 8) -> Gene[List[T]]:
    return _Lists(element, min_size, max_size)


def dictionaries(keys: Gene[Any], values: Gene[Any], *, max_size: int = 8) -> Gene[Dict]:
    return _Dictionaries(keys, values, max_size)


def tuples(*parts: Gene[Any]) -> Gene[Tuple[Any, ...]]:
    return _Tuples(parts)


def composite(fn: Callable[..., T]) -> Callable[..., Gene[T]]:
    """``@composite def f(draw, *args)``: ``f(*args)`` is a gene that calls ``fn``."""
    def make(*args: Any, **kwargs: Any) -> Gene[T]:
        return _Composite(fn, args, kwargs)
    make.__doc__ = fn.__doc__
    make.__name__ = fn.__name__
    return make


def decode(gene: Gene[T], data: bytes) -> T:
    """The value ``gene`` decodes from ``data``."""
    return gene.decode(Genome(data))
