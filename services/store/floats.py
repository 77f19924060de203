"""Whether an event's data, as pydantic serialises it, can hold a float.

The hash covers canonical JSON, which writes whole floats as integers (87.0 as 87)
and some others unlike orjson; ``hashchain.encode_data`` therefore searches
orjson's output for floats, most of its cost. Most event types cannot hold one at
all, and that can be read from their types once. The reading is conservative:
whatever could put a float in the output without the declared types showing it
(a custom serialiser or validator, extra fields, a default or factory that is not
validated, a type this does not know) answers "maybe", and the search is made.
"""

from __future__ import annotations

import functools
import typing
import uuid
from collections.abc import Callable, Iterable
from datetime import date
from enum import Enum
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    PlainSerializer,
    PlainValidator,
    SerializeAsAny,
    WrapSerializer,
    WrapValidator,
)
from pydantic_core import PydanticUndefined

from senflow.events.personal import is_vault_serialiser

# Types whose JSON form never holds a float (float itself is checked first: bool is an int).
_PLAIN: tuple[type, ...] = (str, int, date, uuid.UUID, NoneType)
_SAFE_FACTORIES: frozenset[Any] = frozenset({list, dict, tuple, set, frozenset, uuid.uuid4})


@functools.cache
def may_hold_floats(tp: Any) -> bool:
    """True unless ``tp``'s values, serialised by pydantic in JSON mode, never hold a float."""
    return _maybe(tp, set())


def _maybe(tp: Any, walking: set[Any]) -> bool:
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *metadata = get_args(tp)
        return _metadata_may(metadata, walking) or _maybe(inner, walking)
    if origin is Literal:
        return any(_value_may(value, walking) for value in get_args(tp))
    if origin in (Union, UnionType, list, tuple, set, frozenset):
        return any(_maybe(arg, walking) for arg in get_args(tp) if arg is not Ellipsis)
    if not isinstance(tp, type):
        return True  # a type this does not know (dict[...], a string annotation...): maybe
    if issubclass(tp, float):
        return True
    if issubclass(tp, Enum):
        return any(_value_may(member.value, walking) for member in tp)
    if issubclass(tp, BaseModel):
        if tp in walking:
            return False  # a model that holds itself: its other fields decide
        walking.add(tp)
        try:
            return _model_may(tp, walking)
        finally:
            walking.discard(tp)
    return not issubclass(tp, _PLAIN)


def _model_may(model: type[BaseModel], walking: set[Any]) -> bool:
    decorators = model.__pydantic_decorators__
    if (
        model.model_config.get("extra") == "allow"
        or decorators.field_serializers
        or decorators.model_serializers
        or model.model_computed_fields
        or any(d.info.mode != "before" for d in decorators.model_validators.values())
        or any(
            d.info.mode != "before" and _returns_may(d.func, walking)
            for d in decorators.field_validators.values()
        )
    ):
        return True
    for field in model.model_fields.values():
        if field.default is not PydanticUndefined and _value_may(field.default, walking):
            return True  # defaults are not validated
        factory = field.default_factory
        if factory is not None and factory not in _SAFE_FACTORIES:
            return True
        if _metadata_may(field.metadata, walking) or _maybe(field.annotation, walking):
            return True
    return False


def _metadata_may(metadata: Iterable[Any], walking: set[Any]) -> bool:
    """Whether an annotation's extras may write a float: a serialiser (but the vault's,
    which writes strings or the plain value), a validator whose result is not validated
    again (after, wrap, plain) unless its return type holds none, "serialise as any"."""
    for m in metadata:
        if isinstance(m, WrapSerializer | PlainSerializer) and not is_vault_serialiser(m.func):
            return True
        if isinstance(m, AfterValidator | WrapValidator | PlainValidator) and _returns_may(
            m.func, walking
        ):
            return True
        if isinstance(m, SerializeAsAny):
            return True
    return False


def _returns_may(func: Callable[..., Any], walking: set[Any]) -> bool:
    target = getattr(func, "__func__", func)  # a classmethod's function
    try:
        returned = typing.get_type_hints(target).get("return")
    except Exception:
        return True
    return returned is None or _maybe(returned, walking)


def _value_may(value: Any, walking: set[Any]) -> bool:
    if isinstance(value, Enum):
        return _maybe(type(value), walking)
    if isinstance(value, float):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return any(_value_may(v, walking) for v in value)
    if isinstance(value, dict):
        return any(_value_may(v, walking) for v in value.values())
    return not isinstance(value, str | int | NoneType)
