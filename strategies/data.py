"""The strategies for values, arguments and exceptions live with the families
(``greenfuzz.harness.families.values``), whose op strategies draw them."""

from greenfuzz.harness.families.values import (
                                               CATCHABLE_TYPES,
                                               KEYWORDS,
                                               THROWABLE_TYPES,
                                               arguments,
                                               exceptions,
                                               scalars,
                                               values,
)

__all__ = ["CATCHABLE_TYPES", "KEYWORDS", "THROWABLE_TYPES", "arguments", "exceptions",
           "scalars", "values"]
