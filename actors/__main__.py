"""``python -m actors``: print README's configuration table from the settings."""

from actors.config import markdown_table

print(markdown_table(), end="")
