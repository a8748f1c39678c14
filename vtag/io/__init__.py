"""Layer 1, bytes on disk: TFRecord framing and codec, YT8M record schemas and readers, vocabularies, atomic writes."""
