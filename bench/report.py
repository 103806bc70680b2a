"""Markdown tables for the benchmark scripts (their output goes into the README as is)."""


def table(title: str, header: list[str], rows: list[list]) -> None:
    """Print a bold title and a markdown table."""
    print(f"\n**{title}**\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
