"""Sections of BENCHMARKS.md that a script owns, between its markers."""
import re


def replace_section(benchmarks, md_out, name, section, after=None):
    """Writes `section` (which starts with <!-- NAME:start --> and ends with
    <!-- NAME:end -->) to `md_out` and into `benchmarks`: in place of the old
    one, or else after the line `after` (or at the end)."""
    open(md_out, "w").write(section)
    text = open(benchmarks).read()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end) + r"\n", lambda _: section, text, flags=re.S)
    elif after and after in text:
        text = text.replace(after, after + "\n" + section)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(benchmarks, "w").write(text)
