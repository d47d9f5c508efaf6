"""tokenwindow: keep LLM conversations inside their context window."""
