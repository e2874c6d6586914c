"""lampkit data layer: the one task registry, record type, loaders, prompts and converters."""
