"""Domain logic, one module per resource family. No HTTP here: functions take a
keyword-only ``session`` and raise :mod:`llmops.errors` types."""
