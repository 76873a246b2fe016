"""Trace values and their JSON form: what the worker sends and findings store.

Standard library only, Python 3.9+; pasted into reproducers with the runtime.
"""


class ExcValue:
    """An exception as the trace records it: a type label and its args.

    ``args`` None means any args: the model uses it for errors raised by the
    implementation itself, whose messages differ between releases.
    """

    __slots__ = ("args", "type")

    def __init__(self, type, args=()):
        self.type = type
        self.args = args

    def __eq__(self, other):
        return (
            isinstance(other, ExcValue)
            and self.type == other.type
            and (self.args is None or other.args is None or self.args == other.args)
        )

    def __hash__(self):
        return hash(self.type)

    def __repr__(self):
        return "ExcValue(%r, %r)" % (self.type, self.args)

    def to_json(self):
        return {"exc": [self.type, None if self.args is None else encode(self.args)]}


def encode(value):
    """Tagged JSON form of a trace value (tuples, lists and dicts kept apart)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return {"list": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (ExcValue, Opaque)):
        return value.to_json()
    return {"repr": repr(value)}


def decode(data):
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    ((tag, body),) = data.items()
    if tag == "tuple":
        return tuple(decode(v) for v in body)
    if tag == "list":
        return [decode(v) for v in body]
    if tag == "dict":
        return {decode(k): decode(v) for k, v in body}
    if tag == "exc":
        return ExcValue(body[0], None if body[1] is None else decode(body[1]))
    if tag == "repr":
        return Opaque(body)
    raise ValueError("unknown value tag %r" % (tag,))


class Opaque:
    """A value the trace could not represent (kept as its repr; never equal to a prediction)."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __eq__(self, other):
        return isinstance(other, Opaque) and other.text == self.text

    def __hash__(self):
        return hash(self.text)

    def __repr__(self):
        return "Opaque(%r)" % (self.text,)

    def to_json(self):
        return {"repr": self.text}


def encode_trace(trace):
    return [[who, pc, kind, encode(payload)] for who, pc, kind, payload in trace]


def decode_trace(data):
    return [(who, pc, kind, decode(payload)) for who, pc, kind, payload in data]
