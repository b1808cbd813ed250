"""The in-core providers: fallbacks that graceful degradation needs where no tool runs."""
