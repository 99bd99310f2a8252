"""``Record``: frozen, typed value objects declared by class annotations, without ``dataclasses`` or ``typing``.

The gate command runs once per payload in CI, so its start-up is a product feature (../shared/FACTS.md):
importing ``dataclasses`` (it pulls in ``inspect``) and generating methods for a dozen classes, or importing
``typing`` for ``NamedTuple``, costs more than the rest of the command's own work. A record is a tuple
subclass whose fields are read by index (as ``collections.namedtuple``'s are), so building one is a single tuple
allocation (the core builds about forty per payload), and it is immutable, comparable, hashable and picklable
as it is.

Type checkers see each subclass as a frozen dataclass (``dataclass_transform``, PEP 681): constructors
are checked field by field, and assignments to fields are errors.
"""

from __future__ import annotations

from operator import itemgetter

_new_tuple = tuple.__new__

try:
    # CPython's C-level field reader, the one namedtuple uses: about half the cost of a property over itemgetter,
    # and the core reads a few hundred fields per payload. test_records holds CPython to it.
    from _collections import _tuplegetter  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other Pythons read the same field through a property

    def _tuplegetter(index: int, doc: str | None) -> property:
        return property(itemgetter(index), doc=doc)


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms); type checkers honour the name
if TYPE_CHECKING:
    from typing import Any, Self, dataclass_transform
else:

    def dataclass_transform(**_: object) -> object:
        return lambda cls: cls


@dataclass_transform(frozen_default=True)
class Record(tuple):
    """Base for frozen value objects; fields are the subclass's annotated names, in declaration order.

    Construct with every field positionally (the fast path) or by keyword; a field with a class-level value
    is optional and defaults to it.
    """

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _size = 0
    _defaults: dict[str, object] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = list(cls._fields)
        defaults = dict(cls._defaults)
        for name in cls.__dict__.get("__annotations__", {}):
            if name.startswith("_") or name in names:
                continue
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
            names.append(name)
        for index, name in enumerate(names):
            setattr(cls, name, _tuplegetter(index, None))
        cls._fields = tuple(names)
        cls._size = len(names)
        cls._defaults = defaults

    if TYPE_CHECKING:  # type checkers see the __init__ that dataclass_transform describes

        @classmethod
        def _make(cls, values: tuple[Any, ...]) -> Self: ...

    else:

        def __new__(cls, *args, **kwargs):
            if kwargs or len(args) != cls._size:
                args = cls._resolve(args, kwargs)
            return _new_tuple(cls, args)

        # Every field's value in declaration order, unchecked, at the cost of a plain tuple: for the few places
        # that build a record per project or per condition of every payload (calling __new__, a Python
        # function, costs more than the tuple itself).
        _make = classmethod(_new_tuple)

    @classmethod
    def _resolve(cls, args: tuple[object, ...], kwargs: dict[str, object]) -> list[object]:
        """Field values in order from positional and keyword arguments and class defaults, or a TypeError."""
        fields, name = cls._fields, cls.__name__
        if len(args) > len(fields):
            raise TypeError(f"{name} takes {len(fields)} fields, got {len(args)} positional values")
        values = dict(zip(fields, args, strict=False))
        for key, value in kwargs.items():
            if key not in fields:
                raise TypeError(f"{name} has no field {key!r}")
            if key in values:
                raise TypeError(f"{name} got two values for {key!r}")
            values[key] = value
        for key in fields:
            if key not in values:
                if key not in cls._defaults:
                    raise TypeError(f"{name} is missing field {key!r}")
                values[key] = cls._defaults[key]
        return [values[key] for key in fields]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (tried to delete {name!r})")

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickle and copy rebuild the record from its field values
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        # Records of different types are different even with equal values; so is a plain tuple.
        return type(other) is type(self) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self, strict=True))
        return f"{type(self).__name__}({inner})"
