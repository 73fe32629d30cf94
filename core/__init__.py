"""Small shared pieces that `pipeline/`, `extractors/` and `models/` all use; imports nothing from them."""
