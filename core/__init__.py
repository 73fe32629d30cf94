"""Small pieces every layer shares (pipeline, extractors, models): this package imports no project package."""
