"""Print the README's benchmark table from bench/results/*.md (title, RESULT line, link)."""

from pathlib import Path

root = Path(__file__).resolve().parents[1] / "bench" / "results"
print("| benchmark | headline (the file's RESULT line) |")
print("| --- | --- |")
for f in sorted(root.glob("*.md")):
    lines = f.read_text(encoding="utf-8").splitlines()
    title = next((x.lstrip("# ").strip() for x in lines if x.startswith("#")), f.stem)
    result = next((x for x in reversed(lines) if x.startswith("RESULT")), "")
    print(f"| [{title}](bench/results/{f.name}) | `{result.removeprefix('RESULT ').strip()}` |")
