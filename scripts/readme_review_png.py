"""Make docs/review-page.png: the review page of a `collector demo` capture (the bundled recording).

    python scripts/readme_review_png.py [--duration 40] [--out docs/review-page.png]

Needs Xvfb, tkinter and Debian's chromium. Starts an Xvfb display showing a window whose text
changes every few seconds (the "practice"), runs `collector demo --screen on` on it, then
renders the page with headless Chromium (no network: proxy to nowhere) and stores a small PNG.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRACTICE = r"""
import sys, tkinter as tk
root = tk.Tk(); root.geometry("1280x720+0+0"); root.configure(bg="white")
text = tk.Label(root, font=("DejaVu Sans", 28), bg="white", justify="left", anchor="nw")
text.pack(fill="both", expand=True, padx=40, pady=40)
steps = ["Scales, hands separately\n\nC major: C D E F G A B C",
         "Scales, hands separately\n\nG major: G A B C D E F# G",
         "Scales, hands together\n\nD major: D E F# G A B C# D",
         "Arpeggios\n\nC E G C  -  G B D G", "Rest"]
colors = ["#ffffff", "#eef6ff", "#fff6e8", "#effff0", "#f4f4f4"]
def show(i=0):
    color = colors[i % len(colors)]
    text.configure(text=steps[i % len(steps)], bg=color); root.configure(bg=color)
    root.after(7000, show, i + 1)
show(); root.mainloop()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=40.0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "review-page.png")
    args = ap.parse_args()
    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x720x24", "-nolisten", "tcp"])
    time.sleep(1.0)
    env = dict(os.environ, DISPLAY=display, PYTHONPATH=str(ROOT))
    env.pop("OPENLESSON_API_KEY", None)
    practice = subprocess.Popen([sys.executable, "-c", PRACTICE], env=env)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            demo = subprocess.run(
                [sys.executable, "-m", "collector", "demo", "--duration", str(args.duration),
                 "--screen", "on", "--data", tmp],
                env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True,
            )  # fmt: skip
            page = Path(demo.stdout.strip().splitlines()[-1])
            shot = Path(tmp) / "page.png"
            subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp}/c",
                 "--proxy-server=127.0.0.1:9", "--hide-scrollbars", "--window-size=1280,1180",
                 "--virtual-time-budget=15000", f"--screenshot={shot}", page.as_uri()],
                capture_output=True, check=True, timeout=120,
            )  # fmt: skip
            from PIL import Image

            img = Image.open(shot).convert("RGB")
            img = img.resize((1000, round(img.height * 1000 / img.width)), Image.Resampling.LANCZOS)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
            print(f"{args.out} ({args.out.stat().st_size / 1000:.0f} kB) from {page.name}")
    finally:
        practice.terminate()
        xvfb.terminate()


if __name__ == "__main__":
    main()
