"""``Record``: frozen value objects declared by class annotations, without the ``dataclasses`` import.

The gate command runs once per payload in CI, so its start-up is a product feature: importing
``dataclasses`` (which pulls in ``inspect``) and generating methods for a dozen classes costs about 15 ms,
half of the command's whole budget (../shared/FACTS.md). A record gives the same surface the gate needs:
keyword or positional construction, class-level defaults, immutability, equality, hashing and a repr.
"""

from __future__ import annotations


class Record:
    """Base for frozen value objects; fields are the subclass's annotated names, in declaration order."""

    _fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):
                if not name.startswith("_") and name not in names:
                    names.append(name)
        cls._fields = tuple(names)

    def __init__(self, *args: object, **kwargs: object) -> None:
        fields = self._fields
        if not kwargs and len(args) == len(fields):  # the common, fast path: every field positionally
            object.__setattr__(self, "__dict__", dict(zip(fields, args, strict=True)))
            return
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} fields, got {len(args)} positional values")
        values = dict(zip(fields, args, strict=False))
        for name, value in kwargs.items():
            if name not in fields:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            if name in values:
                raise TypeError(f"{type(self).__name__} got two values for {name!r}")
            values[name] = value
        for name in fields:
            if name not in values:
                if not hasattr(type(self), name):
                    raise TypeError(f"{type(self).__name__} is missing field {name!r}")
                values[name] = getattr(type(self), name)
        object.__setattr__(self, "__dict__", values)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (tried to set {name!r})")

    __delattr__ = __setattr__  # type: ignore[assignment]

    def as_tuple(self) -> tuple[object, ...]:
        return tuple(self.__dict__[name] for name in self._fields)

    def as_dict(self) -> dict[str, object]:
        return {name: self.__dict__[name] for name in self._fields}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.as_tuple() == other.as_tuple()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self.as_tuple()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"
