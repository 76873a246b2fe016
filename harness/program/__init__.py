"""Programs as plain immutable data: ops, validation, the JSON codec, scale recipes."""
